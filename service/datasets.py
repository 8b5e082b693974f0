"""Audit datasets: parse an uploaded or named JSONL/CSV file into problems, then pick a sample.

Accepted rows: GSM8K (`question`, `answer` with `#### N`: prompt = question, expected = N as the
judge's strict match reads it, reference = answer) or `prompt`, `expected` and an optional `reference`. A file with any bad row is
refused as a whole, with the row number, so an audit never starts on partial garbage.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from diagnostics.answers import extract_strict


class DatasetError(ValueError):
    """The file is not a usable dataset; the message names the row."""


@dataclass(frozen=True)
class ProblemItem:
    """One problem of an audit; `index` is its row in the source file (0-based)."""

    index: int
    prompt: str
    expected: str
    reference: str | None = None


def parse_dataset(data: bytes, filename: str, *, max_prompt_chars: int) -> list[ProblemItem]:
    """Every problem in `data` (JSONL or CSV, chosen by suffix, else by the first character)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"the file is not UTF-8 text ({err.reason})") from None
    suffix = Path(filename).suffix.lower()
    is_csv = suffix == ".csv" or (
        suffix not in (".jsonl", ".json") and not text.lstrip()[:1] == "{"
    )
    rows = _csv_rows(text) if is_csv else _jsonl_rows(text)
    items = [_item(i, row, line, max_prompt_chars) for i, (line, row) in enumerate(rows)]
    if not items:
        raise DatasetError("the file holds no problems")
    return items


def read_dataset_file(path: Path, *, max_prompt_chars: int) -> list[ProblemItem]:
    """Every problem in the file at `path` (see parse_dataset)."""
    return parse_dataset(path.read_bytes(), path.name, max_prompt_chars=max_prompt_chars)


def sample_items(
    items: list[ProblemItem], limit: int | None, sample: str = "first", seed: int = 0
) -> list[ProblemItem]:
    """`limit` problems: the first ones, or a seeded random sample kept in file order."""
    if limit is None or limit >= len(items):
        return list(items)
    if sample == "random":
        chosen = random.Random(seed).sample(range(len(items)), limit)
        return [items[i] for i in sorted(chosen)]
    return list(items[:limit])


def _jsonl_rows(text: str):
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"line {n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"line {n}: expected a JSON object")
        yield n, row


def _csv_rows(text: str):
    reader = csv.DictReader(io.StringIO(text))
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise DatasetError(f"line {reader.line_num}: bad CSV ({err})") from None


def _item(index: int, row: dict, line: int, max_prompt_chars: int) -> ProblemItem:
    if "question" in row and "answer" in row and "prompt" not in row:
        answer = _text(row["answer"], "answer", line)
        expected = extract_strict(answer)
        if expected is None:
            raise DatasetError(f"line {line}: GSM8K answer has no '#### <number>'")
        prompt, reference = _text(row["question"], "question", line), answer
    elif "prompt" in row and "expected" in row:
        prompt, expected = (
            _text(row["prompt"], "prompt", line),
            _text(row["expected"], "expected", line),
        )
        ref = row.get("reference")
        reference = _text(ref, "reference", line) if ref not in (None, "") else None
    else:
        raise DatasetError(
            f"line {line}: need 'question' and 'answer' (GSM8K) or 'prompt' and 'expected' columns"
        )
    if len(prompt) > max_prompt_chars:
        raise DatasetError(f"line {line}: prompt longer than {max_prompt_chars} characters")
    return ProblemItem(index=index, prompt=prompt, expected=expected, reference=reference)


def _text(value: object, name: str, line: int) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"line {line}: '{name}' must be a non-empty string")
    if "\x00" in value:
        raise DatasetError(f"line {line}: '{name}' holds a NUL character")
    return value.strip()
