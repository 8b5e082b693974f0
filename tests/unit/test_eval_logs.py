"""Reading lm-evaluation-harness samples files, on the real one committed as a fixture.

The fixture was written by lm-eval 0.4.13 itself (tests/fixtures/lm_eval/make_fixture.sh); these
tests only read it, so they run without lm-eval installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.answers import extract_strict, judge
from diagnostics.errors import DriftscopeError, EvalLogError
from diagnostics.eval_logs import DEFAULT_FILTER, HarnessSample, failures, read_samples

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval"
FILTERS = ("strict-match", "flexible-extract")


@pytest.fixture(scope="module")
def samples_path() -> Path:
    (path,) = FIXTURE_DIR.glob("samples_gsm8k_local_*.jsonl")
    return path


@pytest.fixture(scope="module")
def samples(samples_path) -> list[HarnessSample]:
    return read_samples(samples_path)


@pytest.fixture(scope="module")
def raw_lines(samples_path) -> list[dict]:
    return [json.loads(line) for line in samples_path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def gsm8k_rows() -> list[dict]:
    text = (FIXTURE_DIR / "gsm8k_test_1300-1307.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_every_line_is_a_typed_sample(samples, raw_lines, gsm8k_rows):
    assert len(samples) == len(raw_lines) == 2 * len(gsm8k_rows) == 16
    for n, (s, raw) in enumerate(zip(samples, raw_lines, strict=True), 1):
        assert isinstance(s, HarnessSample) and s.line == n
        row = gsm8k_rows[s.doc_id]  # doc_id N is the Nth row of the task's test JSONL
        assert s.doc == row and s.question == row["question"] and s.reference == row["answer"]
        assert s.target == row["answer"] and s.expected == extract_strict(row["answer"])
        assert s.prompt == raw["arguments"]["gen_args_0"]["arg_0"]
        # the harness's prompt: five worked examples, then this question, raw (no chat template)
        assert s.prompt.endswith(f"Question: {row['question']}\nAnswer:")
        assert s.prompt.count("Question: ") == 6 and "<|im_start|>" not in s.prompt
        assert s.generation_kwargs["until"] == ["Question:", "</s>", "<|im_end|>"]
        assert s.generation_kwargs["do_sample"] is False
        assert s.responses == raw["resps"][0] and s.response == raw["resps"][0][0]
        assert s.filtered_responses == raw["filtered_resps"]
        assert s.filter == raw["filter"] and s.metrics == {"exact_match": raw["exact_match"]}
        assert (s.doc_hash, s.prompt_hash, s.target_hash) == (
            raw["doc_hash"],
            raw["prompt_hash"],
            raw["target_hash"],
        )
    for name in FILTERS:  # each document once per filter
        assert sorted(s.doc_id for s in samples if s.filter == name) == list(range(8))


@pytest.mark.parametrize("filter_name", FILTERS)
def test_failures_are_the_lines_the_harness_scored_zero(samples, raw_lines, filter_name):
    chosen = failures(samples, filter_name)
    wanted = [
        r["doc_id"] for r in raw_lines if r["filter"] == filter_name and r["exact_match"] == 0
    ]
    assert [s.doc_id for s in chosen] == wanted == [0, 1, 2, 3, 4, 6, 7]
    assert all(s.filter == filter_name and s.metrics["exact_match"] == 0.0 for s in chosen)
    passed = {s.doc_id for s in samples if s.filter == filter_name} - set(wanted)
    assert passed == {5}


def test_default_filter_is_strict_match(samples):
    assert DEFAULT_FILTER == "strict-match"
    assert failures(samples) == failures(samples, "strict-match")


def test_driftscope_judge_agrees_with_the_harness(samples):
    # answers.py follows gsm8k v3's strict-match: the same extraction and the same verdicts
    for s in samples:
        verdict = judge(s.response, s.expected, "gsm8k")
        assert verdict.correct == (s.metrics["exact_match"] == 1.0), s.doc_id
        if s.filter == "strict-match":
            assert s.filtered_responses == [extract_strict(s.response) or "[invalid]"]


def test_a_diagnosis_has_what_it_needs(samples):
    (empty,) = [s for s in failures(samples) if not s.response]  # doc_id 2: the model stopped
    assert empty.doc_id == 2 and empty.filtered_responses == ["[invalid]"]
    for s in failures(samples):
        assert (
            s.prompt and s.expected and s.reference and s.reference.endswith(f"#### {s.expected}")
        )


def test_absent_filter_lists_the_filters_present(samples):
    with pytest.raises(EvalLogError, match="'exact'.*strict-match, flexible-extract"):
        failures(samples, "exact")


def test_absent_metric_lists_the_metrics_present(samples):
    with pytest.raises(EvalLogError, match="no metric 'acc'.*exact_match"):
        failures(samples, "strict-match", metric="acc")


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "samples_gsm8k_local_2026-01-01T00-00-00.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _edited(raw: dict, **changes) -> str:
    return json.dumps({**raw, **changes}, ensure_ascii=False)


def test_a_line_that_is_not_json_names_its_line(tmp_path, samples_path):
    good = samples_path.read_text(encoding="utf-8").splitlines()
    path = _write(tmp_path, [good[0], good[1][:200]])
    with pytest.raises(EvalLogError, match=rf"{path.name}:2: not valid JSON") as err:
        read_samples(path)
    assert isinstance(err.value, DriftscopeError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"doc_id": "0"}, r":1: doc_id: Input should be a valid integer"),
        ({"resps": "no"}, r":1: resps: Input should be a valid list"),
        ({"exact_match": "1"}, r":1: metric 'exact_match' needs a number"),
        ({"arguments": {"gen_args_0": {"arg_0": 3}}}, r":1: arguments.gen_args_0 needs arg_0"),
        ({"resps": [[]]}, r":1: resps holds no generation"),
    ],
)
def test_a_malformed_field_names_its_line_and_field(tmp_path, raw_lines, change, message):
    with pytest.raises(EvalLogError, match=message):
        read_samples(_write(tmp_path, [_edited(raw_lines[0], **change)]))


def test_a_missing_field_names_it(tmp_path, raw_lines):
    raw = {k: v for k, v in raw_lines[0].items() if k != "filter"}
    with pytest.raises(EvalLogError, match=r":1: filter: Field required"):
        read_samples(_write(tmp_path, [json.dumps(raw)]))


def test_a_line_that_is_not_an_object(tmp_path):
    with pytest.raises(EvalLogError, match=r":1: expected a JSON object, got list"):
        read_samples(_write(tmp_path, ["[1, 2]"]))


def test_an_edited_prompt_no_longer_matches_its_hash(tmp_path, raw_lines):
    raw = raw_lines[0]
    args = {"gen_args_0": {**raw["arguments"]["gen_args_0"], "arg_0": "Question: 1+1?\nAnswer:"}}
    with pytest.raises(EvalLogError, match=r":1: prompt_hash does not match"):
        read_samples(_write(tmp_path, [_edited(raw, arguments=args)]))


def test_a_multi_request_task_is_refused(tmp_path, raw_lines):
    raw = raw_lines[0]
    args = {"gen_args_0": raw["arguments"]["gen_args_0"], "gen_args_1": {"arg_0": "x"}}
    with pytest.raises(EvalLogError, match=r":1: 2 requests per document; only generation"):
        read_samples(_write(tmp_path, [_edited(raw, arguments=args)]))


def test_a_document_twice_under_one_filter(tmp_path, samples_path):
    first = samples_path.read_text(encoding="utf-8").splitlines()[0]
    with pytest.raises(EvalLogError, match=r":2: doc_id 0 appears twice under filter"):
        read_samples(_write(tmp_path, [first, first]))


def test_a_score_that_is_not_zero_or_one(tmp_path, raw_lines):
    path = _write(tmp_path, [_edited(raw_lines[0], exact_match=0.5)])
    with pytest.raises(EvalLogError, match=r"line 1: exact_match is 0.5, not a 0/1 score"):
        failures(read_samples(path))


def test_an_empty_or_missing_file(tmp_path):
    with pytest.raises(EvalLogError, match="no samples"):
        read_samples(_write(tmp_path, [""]))
    with pytest.raises(EvalLogError, match="samples file not found"):
        read_samples(tmp_path / "nope.jsonl")
