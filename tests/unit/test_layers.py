"""The import rule (README, "Layout"): diagnostics <- service <- workers <- api <- cli. Each
package's ruff.toml bans the layers above it (ruff TID251), so `make lint` fails on a back-edge;
this checks the rule is in force for every package, and that the code obeys it. And the size
rule: no module of the five packages is over MAX_MODULE_LINES lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["diagnostics", "service", "workers", "api", "cli"]  # each may import those before it
MAX_MODULE_LINES = 450
"""A module a newcomer can hold in their head; a longer one is split along the concepts it holds."""


def _ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "TID251", "--no-cache", *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("low", range(len(LAYERS)))
def test_every_import_upwards_is_refused_and_downwards_allowed(low):
    package = LAYERS[low]
    for other in LAYERS:
        for code in (f"import {other}.x\n", f"def f():\n    from {other}.x import y\n"):
            result = _ruff("--stdin-filename", f"{package}/probe.py", "-", stdin=code)
            upward = LAYERS.index(other) > low
            assert (result.returncode != 0) == upward, (package, code, result.stdout)
            if upward:
                assert f"`{other}` is banned" in result.stdout


def test_the_code_has_no_back_edge():
    result = _ruff(*LAYERS)
    assert result.returncode == 0, result.stdout


def test_no_module_is_over_the_size_limit():
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*.py")
    }
    assert len(sizes) > 100  # the walk found the packages
    over = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"
