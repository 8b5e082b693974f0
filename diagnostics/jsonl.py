"""JSON Lines: the values of a .jsonl text, numbered from 1, blank lines skipped. The corpus
reader, the audit dataset parser and the lm-eval samples reader all read through it and word
their own errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


class JsonlLineError(ValueError):
    """A line that is not JSON: its number and the parser's message."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"line {line}: {msg}")
        self.line, self.msg = line, msg


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line; JsonlLineError at one that is not
    JSON."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise JsonlLineError(number, err.msg) from err
        yield number, value
