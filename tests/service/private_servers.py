"""Private PostgreSQL and Redis servers for the fault tests (their own ports and temp dirs, so
stopping them never touches the shared 5432 / 6379), and the API as a real uvicorn process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

PG_BIN = Path(os.environ.get("DRIFTSCOPE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def wait_until(check, timeout_s: float, what: str, every_s: float = 0.2):
    start = time.monotonic()
    while True:
        try:
            value = check()
            if value:
                return value
        except AssertionError:
            raise  # the check says waiting is pointless (a process died)
        except Exception:
            pass
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


@dataclass
class PrivatePostgres:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                          str(self.root / "pg.log"), "-w", "-t", "60", "-o",
                          f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                          "-c fsync=off", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast",
                          "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def ready(self) -> bool:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()


def start_private_postgres() -> PrivatePostgres:
    """initdb and start a cluster in a new temp dir (outside pytest's root-only tmp: the server
    runs as `postgres`); remove it with `pg.remove()`."""
    root = Path(tempfile.mkdtemp(prefix="driftscope-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                      "--auth=trust", "--no-sync"]),
        check=True, capture_output=True,
    )  # fmt: skip
    pg = PrivatePostgres(root, free_port())
    pg.start()
    return pg


@dataclass
class PrivateRedis:
    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 60, "private redis")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no save: the queue is lost, as after a crash
            self.proc.wait(timeout=10)


def start_private_redis(tmp: Path) -> PrivateRedis:
    root = tmp / "redis"
    root.mkdir()
    server = PrivateRedis(root, free_port())
    server.start()
    return server


def spawn(cmd: list[str], env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    """A child process in its own process group (see stop_group)."""
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def start_api(env: dict, log: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host",
         "127.0.0.1", "--port", str(port), "--timeout-keep-alive", "60"],
        env, log, cwd,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, f"the API exited: {log.read_text()[-2000:]}"
        return httpx.get(base + "/healthz").status_code == 200

    wait_until(up, 180, "the API")  # minutes on a loaded machine: it imports torch
    return proc, base
