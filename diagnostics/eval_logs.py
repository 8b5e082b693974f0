"""Read eval-run logs: lm-evaluation-harness `--log_samples` files.

`lm_eval ... --log_samples --output_path OUT` writes `OUT/<model>/samples_<task>_<date>.jsonl`, one
line per document **per filter** (gsm8k: `strict-match` and `flexible-extract`), each holding the
dataset row (`doc`), the `target`, the requests (`arguments.gen_args_0.arg_0` is the exact prompt
the harness built, few-shot examples included; `arg_1` its generation kwargs), the raw generations
(`resps`), the filtered answers (`filtered_resps`), the `filter`, one key per metric named in
`metrics` (`exact_match`), and sha256 hashes of doc, prompt and target.

Only generation tasks (`output_type: generate_until`, one request per document) are read: they are
the ones whose failures have a response to diagnose. The prompt is raw text, not a chat: the
harness tokenized it as it stands (with `--apply_chat_template` the template is already rendered
into it), so a diagnosis of a sample feeds `prompt` with chat=False and teacher-forces `response`.
Two things a samples file does not record: the generation budget (lm-eval's HF model defaults to
256 new tokens) and that the harness encodes the prompt with the tokenizer's defaults (for SmolLM2:
no BOS token, where `LanguageModel.prompt_ids(chat=False)` prepends one).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from diagnostics.answers import extract_strict
from diagnostics.errors import EvalLogError
from diagnostics.jsonl import JsonlLineError, jsonl_rows

DEFAULT_FILTER = "strict-match"
"""The filter failures are picked under unless told otherwise (gsm8k's `#### N` extraction)."""

DEFAULT_METRIC = "exact_match"


class HarnessSample(BaseModel):
    """One line of a samples file: one document scored under one filter."""

    model_config = ConfigDict(frozen=True)

    line: int  # 1-based line of the samples file
    doc_id: int  # the document's index in the task's test split; joins the filters' lines
    doc: dict[str, Any]  # the dataset row as the harness read it
    question: str | None  # doc["question"] where the task has one (gsm8k)
    reference: str | None  # the gold solution, doc["answer"] where it is text (gsm8k)
    target: str  # what the harness scored against (gsm8k: the gold solution ending "#### N")
    expected: str  # the expected answer: the `#### N` of `target` (normalised), else target as is
    prompt: str  # the exact prompt the harness generated from, few-shot examples included
    generation_kwargs: dict[str, Any]  # until, do_sample, temperature, max_gen_toks, ...
    responses: list[str]  # the raw generations, one per repeat (gsm8k: one)
    filtered_responses: list[str]  # what the filter extracted from them ("[invalid]" if nothing)
    filter: str  # the filter this line was scored under: strict-match, flexible-extract, ...
    metrics: dict[str, float]  # every metric of this line, e.g. {"exact_match": 0.0}
    doc_hash: str  # sha256 of the doc as the harness dumped it
    prompt_hash: str  # sha256 of `prompt`
    target_hash: str  # sha256 of `target`

    @property
    def response(self) -> str:
        """The generation a diagnosis examines: the first (gsm8k: only) raw response."""
        return self.responses[0]


class _SampleLine(BaseModel):
    """A samples-file line as lm-eval writes it; metric values are extra top-level keys."""

    model_config = ConfigDict(extra="allow", strict=True)

    doc_id: int
    doc: dict[str, Any]
    target: str
    arguments: dict[str, dict[str, Any]]
    resps: list[list[str]]
    filtered_resps: list[str | list[str]]
    filter: str
    metrics: list[str]
    doc_hash: str
    prompt_hash: str
    target_hash: str


def read_samples(path: str | Path) -> list[HarnessSample]:
    """Every line of an lm-evaluation-harness samples file (`samples_<task>_<date>.jsonl`).

    Raises EvalLogError naming the file and line for a missing file, a line that is not JSON or
    lacks a field, a non-generation task, a hash that does not match its text (the file was edited
    after the harness wrote it), or a document scored twice under one filter.
    """
    path = Path(path)
    if not path.is_file():
        raise EvalLogError(f"samples file not found: {path}")
    return parse_samples(path.read_text(encoding="utf-8"), str(path))


def parse_samples(text: str, where: str) -> list[HarnessSample]:
    """The lines of a samples file's `text` (see read_samples); `where` names it in errors."""
    samples: list[HarnessSample] = []
    seen: set[tuple[int, str]] = set()
    try:
        for lineno, raw in jsonl_rows(text.splitlines()):
            sample = _sample(raw, f"{where}:{lineno}", lineno)
            key = (sample.doc_id, sample.filter)
            if key in seen:
                raise EvalLogError(
                    f"{where}:{lineno}: doc_id {sample.doc_id} appears twice under filter "
                    f"{sample.filter!r}; is this several runs concatenated?"
                )
            seen.add(key)
            samples.append(sample)
    except JsonlLineError as err:
        raise EvalLogError(f"{where}:{err.line}: not valid JSON ({err.msg})") from None
    if not samples:
        raise EvalLogError(f"{where}: no samples: is this an lm-eval --log_samples file?")
    return samples


def looks_like_samples(row: dict[str, Any]) -> bool:
    """Whether a JSON row is a samples-file line (a harness log, not a dataset row)."""
    return {"doc_id", "doc", "arguments", "resps", "filtered_resps", "filter"} <= row.keys()


def failures(
    samples: list[HarnessSample], filter_name: str = DEFAULT_FILTER, metric: str = DEFAULT_METRIC
) -> list[HarnessSample]:
    """The samples scored under `filter_name` whose `metric` is 0, in file order.

    Raises EvalLogError listing what is there when `filter_name` or `metric` is absent, or when the
    metric is not a 0/1 score (a failure is only defined for those).
    """
    present = list(dict.fromkeys(s.filter for s in samples))
    if filter_name not in present:
        raise EvalLogError(
            f"no samples under filter {filter_name!r}; the file has: {', '.join(present) or 'none'}"
        )
    chosen = [s for s in samples if s.filter == filter_name]
    out = []
    for s in chosen:
        if metric not in s.metrics:
            raise EvalLogError(
                f"line {s.line}: no metric {metric!r}; the line has: {', '.join(s.metrics)}"
            )
        value = s.metrics[metric]
        if value not in (0.0, 1.0):
            raise EvalLogError(
                f"line {s.line}: {metric} is {value}, not a 0/1 score: failures are undefined"
            )
        if value == 0.0:
            out.append(s)
    return out


def _sample(raw: Any, where: str, lineno: int) -> HarnessSample:
    if not isinstance(raw, dict):
        raise EvalLogError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    try:
        row = _SampleLine.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "line"
        raise EvalLogError(f"{where}: {field}: {first['msg']}") from None
    if list(row.arguments) != ["gen_args_0"] or len(row.resps) != 1 or len(row.filtered_resps) != 1:
        raise EvalLogError(
            f"{where}: {len(row.arguments)} requests per document; only generation tasks "
            "(output_type: generate_until, one request per document) are read"
        )
    request = row.arguments["gen_args_0"]
    prompt, kwargs = request.get("arg_0"), request.get("arg_1")
    if not isinstance(prompt, str) or not isinstance(kwargs, dict):
        raise EvalLogError(
            f"{where}: arguments.gen_args_0 needs arg_0 (the prompt, text) and arg_1 "
            "(generation kwargs, an object): not a generate_until request"
        )
    if not row.resps[0]:
        raise EvalLogError(f"{where}: resps holds no generation")
    metrics = {}
    extra = row.model_extra or {}
    for name in row.metrics:
        value = extra.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvalLogError(f"{where}: metric {name!r} needs a number, got {value!r}")
        metrics[name] = float(value)
    _check_hash(where, "doc_hash", row.doc_hash, _doc_dump(row.doc))
    _check_hash(where, "prompt_hash", row.prompt_hash, prompt)
    _check_hash(where, "target_hash", row.target_hash, row.target)
    filtered = row.filtered_resps[0]
    question, answer = row.doc.get("question"), row.doc.get("answer")
    return HarnessSample(
        line=lineno,
        doc_id=row.doc_id,
        doc=row.doc,
        question=question if isinstance(question, str) else None,
        reference=answer if isinstance(answer, str) else None,
        target=row.target,
        expected=extract_strict(row.target) or row.target.strip(),
        prompt=prompt,
        generation_kwargs=kwargs,
        responses=row.resps[0],
        filtered_responses=[filtered] if isinstance(filtered, str) else filtered,
        filter=row.filter,
        metrics=metrics,
        doc_hash=row.doc_hash,
        prompt_hash=row.prompt_hash,
        target_hash=row.target_hash,
    )


def _doc_dump(doc: dict[str, Any]) -> str:
    """The doc serialised as lm-eval hashes it (indent 2, non-ASCII kept)."""
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _check_hash(where: str, name: str, recorded: str, text: str) -> None:
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != recorded:
        raise EvalLogError(
            f"{where}: {name} does not match the line's text: the file was changed after "
            "lm-eval wrote it"
        )
