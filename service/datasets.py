"""Audit datasets: parse an uploaded or named JSONL/CSV file into problems, then pick a sample.

Accepted rows: GSM8K (`question`, `answer` with `#### N`: prompt = question, expected = N as the
judge's strict match reads it, reference = answer) or `prompt`, `expected` and an optional
`reference`. A file with any bad row is refused as a whole, with the row number, so an audit never
starts on partial garbage.

An lm-evaluation-harness `--log_samples` file is read as an eval run: its problems are the
documents that failed under the chosen filter, each with the harness's prompt (raw text, few-shot
examples included: diagnosed with chat=False) and the harness's response to diagnose as given
(never regenerated); an item's `index` is the harness's `doc_id`, so exports join on it.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from diagnostics.answers import AnswerMode, extract_strict
from diagnostics.eval_logs import DEFAULT_FILTER, failures, looks_like_samples, parse_samples
from diagnostics.jsonl import JsonlLineError, jsonl_rows
from diagnostics.options import DiagnosisOptions
from service.validation import MAX_JSON_DEPTH, json_problem, text_problem

FILTER_MODES: dict[str, AnswerMode] = {"strict-match": "gsm8k", "flexible-extract": "numeric"}
"""The answer mode that judges like the harness's filter (gsm8k's `#### N`; its last number)."""


class DatasetError(ValueError):
    """The file is not a usable dataset; the message names the row."""


@dataclass(frozen=True)
class ProblemItem:
    """One problem of an audit; `index` is its row in the source file (0-based), or the
    harness's `doc_id` for an eval run; `output` is a response to diagnose as given."""

    index: int
    prompt: str
    expected: str
    reference: str | None = None
    output: str | None = None


@dataclass(frozen=True)
class Dataset:
    """The problems of a source file, and what kind of file it was."""

    items: list[ProblemItem]
    kind: str  # "problems" (a dataset) | "lm-eval" (a samples file: its failures only)
    n_rows: int  # problems in the file (an eval run: documents scored under the filter)
    filter: str | None = None  # the eval run's filter the failures were picked under

    def options_for(self, options: DiagnosisOptions) -> DiagnosisOptions:
        """The diagnosis options for these problems: an eval run's prompts are raw text
        (chat=False) and, unless a mode was asked for, judged like the harness's filter."""
        if self.kind != "lm-eval":
            return options
        mode = options.mode or FILTER_MODES.get(self.filter or "", "numeric")
        return options.model_copy(update={"chat": False, "mode": mode})


def parse_dataset(
    data: bytes, filename: str, *, max_prompt_chars: int, filter_name: str | None = None
) -> Dataset:
    """Every problem in `data` (JSONL or CSV, chosen by suffix, else by the first character), or
    the failures of an lm-eval samples file under `filter_name` (default strict-match)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"the file is not UTF-8 text ({err.reason})") from None
    suffix = Path(filename).suffix.lower()
    is_csv = suffix == ".csv" or (
        suffix not in (".jsonl", ".json") and not text.lstrip()[:1] == "{"
    )
    _check_storable(text, is_csv)
    if not is_csv and _first_row_is_samples(text):
        return _eval_run(text, filename, filter_name or DEFAULT_FILTER, max_prompt_chars)
    if filter_name is not None:
        raise DatasetError(
            "a filter applies to lm-eval --log_samples files only; this file is a dataset"
        )
    rows = _csv_rows(text) if is_csv else _jsonl_rows(text)
    items = [_item(i, row, line, max_prompt_chars) for i, (line, row) in enumerate(rows)]
    if not items:
        raise DatasetError("the file holds no problems")
    return Dataset(items=items, kind="problems", n_rows=len(items))


def read_dataset_file(
    path: Path, *, max_prompt_chars: int, filter_name: str | None = None
) -> Dataset:
    """Every problem in the file at `path` (see parse_dataset)."""
    return parse_dataset(
        path.read_bytes(), path.name, max_prompt_chars=max_prompt_chars, filter_name=filter_name
    )


def _check_storable(text: str, is_csv: bool) -> None:
    """Refuse, naming the line, text no database can store (a NUL character; in JSON, an
    escaped NUL or lone surrogate anywhere in a row, the harness's responses included) and JSON
    rows nested past MAX_JSON_DEPTH (one that would exhaust the parser's stack among them)."""
    for n, line in enumerate(text.splitlines(), start=1):
        problem = text_problem(line)
        if problem is None and not is_csv and line.strip():
            try:
                problem = json_problem(json.loads(line))
            except RecursionError:
                problem = f"nested deeper than {MAX_JSON_DEPTH} levels"
            except ValueError:  # not JSON: the row parser names it
                problem = None
        if problem is not None:
            raise DatasetError(f"line {n}: {problem}")


def _first_row_is_samples(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and looks_like_samples(row)


def _eval_run(text: str, filename: str, filter_name: str, max_prompt_chars: int) -> Dataset:
    """The failures of a samples file under `filter_name`, with the harness's responses.
    EvalLogError (bad line, unknown filter) is raised as DatasetError with its message."""
    from diagnostics.errors import EvalLogError

    try:
        samples = parse_samples(text, Path(filename).name)
        failed = failures(samples, filter_name)
    except EvalLogError as err:
        raise DatasetError(str(err)) from None
    items = []
    for s in failed:
        if len(s.prompt) > max_prompt_chars:
            raise DatasetError(
                f"line {s.line}: the harness prompt is {len(s.prompt)} characters, longer "
                f"than {max_prompt_chars} (DRIFTSCOPE_MAX_PROMPT_CHARS)"
            )
        items.append(
            ProblemItem(
                index=s.doc_id,
                prompt=s.prompt,
                expected=s.expected,
                reference=s.reference,
                output=s.response,
            )
        )
    n_rows = sum(1 for s in samples if s.filter == filter_name)
    if not items:
        raise DatasetError(
            f"no failures under filter {filter_name!r}: all {n_rows} documents passed, "
            "nothing to diagnose"
        )
    return Dataset(items=items, kind="lm-eval", n_rows=n_rows, filter=filter_name)


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
    try:
        for n, row in jsonl_rows(text.splitlines()):
            if not isinstance(row, dict):
                raise DatasetError(f"line {n}: expected a JSON object")
            yield n, row
    except JsonlLineError as err:
        raise DatasetError(f"line {err.line}: not valid JSON ({err.msg})") from None


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
    return value.strip()


def audit_extra(dataset: Dataset, limit: int | None, sample: str, seed: int) -> dict:
    """What an audit records about its source besides the diagnosis options."""
    extra: dict = {"limit": limit, "sample": sample, "seed": seed, "n_in_file": dataset.n_rows}
    if dataset.kind == "lm-eval":
        extra |= {"kind": "lm-eval", "filter": dataset.filter, "n_failures": len(dataset.items)}
    return extra
