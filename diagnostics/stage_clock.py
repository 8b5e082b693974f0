"""Wall and CPU seconds per stage of a diagnosis, into its report's Timings.

CPU seconds are this process's (time.process_time): with one torch thread they are what the
stage cost, whatever else runs on the machine; wall seconds are what a user waited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from diagnostics.report import Timings

WALL_FIELD = {
    "generate": "generate_s",
    "paths": "paths_s",
    "attribution": "attribution_s",
    "null": "verification_s",
    "continuations": "verification_s",
    "context": "context_s",
}


class Cancelled(Exception):
    """The work was cancelled; raised at the next stage boundary (see STOP_CHECK)."""


STOP_CHECK: ContextVar[Callable[[], bool] | None] = ContextVar("stop_check", default=None)
"""Asked as each stage starts: True stops the diagnosis there with Cancelled (set per problem
by diagnose_batch's `should_stop`)."""


class StageClock:
    """Accumulates stages into `timings`; the clock starts at `started` = (wall, cpu)."""

    def __init__(self, started: tuple[float, float] | None = None) -> None:
        self.timings = Timings()
        self.started = started or now()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        check = STOP_CHECK.get()
        if check is not None and check():
            raise Cancelled(f"cancelled before the {name} stage")
        wall, cpu = now()
        try:
            yield
        finally:
            self.add_since(name, (wall, cpu))

    def add_since(self, name: str, start: tuple[float, float]) -> None:
        """Add the wall and CPU seconds from `start` = (wall, cpu) to now to stage `name`."""
        wall, cpu = start
        self.add(name, time.perf_counter() - wall, time.process_time() - cpu)

    def add(self, name: str, wall_s: float, cpu_s: float) -> None:
        field = WALL_FIELD[name]
        setattr(self.timings, field, getattr(self.timings, field) + wall_s)
        self.timings.cpu_s[name] = self.timings.cpu_s.get(name, 0.0) + cpu_s

    def finish(self) -> Timings:
        wall, cpu = self.started
        self.timings.total_s = time.perf_counter() - wall
        self.timings.cpu_s["total"] = time.process_time() - cpu
        return self.timings


def now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()
