"""An lm-eval `--log_samples` file as an audit source: the real harness fixture's failures under a
filter become problems carrying the harness's prompt and response (doc_id as their index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.eval_logs import read_samples
from diagnostics.options import DiagnosisOptions
from service.datasets import DatasetError, audit_extra, parse_dataset, read_dataset_file

FIXTURE = next((Path(__file__).parents[1] / "fixtures" / "lm_eval").glob("samples_*.jsonl"))
FAILED_DOCS = [0, 1, 2, 3, 4, 6, 7]  # doc_id 5 passes under both filters (fixture README)


@pytest.mark.parametrize(
    ("filter_name", "mode"),
    [(None, "gsm8k"), ("strict-match", "gsm8k"), ("flexible-extract", "numeric")],
)
def test_failures_under_a_filter_carry_the_harness_prompt_and_response(filter_name, mode):
    dataset = read_dataset_file(FIXTURE, max_prompt_chars=8000, filter_name=filter_name)
    chosen = filter_name or "strict-match"
    lines = {s.doc_id: s for s in read_samples(FIXTURE) if s.filter == chosen}
    assert (dataset.kind, dataset.filter, dataset.n_rows) == ("lm-eval", chosen, 8)
    assert [item.index for item in dataset.items] == FAILED_DOCS
    for item in dataset.items:
        sample = lines[item.index]
        assert item.prompt == sample.prompt and item.prompt.startswith("Question:")
        assert item.output == sample.responses[0]
        assert item.expected == sample.expected and item.reference == sample.doc["answer"]
    assert dataset.items[2].output == ""  # doc 2: the model stopped at once
    opts = dataset.options_for(DiagnosisOptions())
    assert (opts.chat, opts.mode) == (False, mode)
    assert dataset.options_for(DiagnosisOptions(mode="exact")).mode == "exact"
    extra = audit_extra(dataset, None, "first", 0)
    assert extra["kind"] == "lm-eval" and extra["filter"] == chosen and extra["n_failures"] == 7


def test_an_unknown_filter_lists_the_file_s_filters():
    with pytest.raises(DatasetError, match="flexible-extract") as err:
        parse_dataset(FIXTURE.read_bytes(), FIXTURE.name, max_prompt_chars=8000, filter_name="x")
    assert "'x'" in str(err.value)


def test_a_filter_on_a_plain_dataset_is_refused_and_plain_rows_are_unchanged():
    rows = b'{"question": "what is 2 plus 3 ?", "answer": "2 + 3 = 5\\n#### 5"}\n'
    with pytest.raises(DatasetError, match="lm-eval"):
        parse_dataset(rows, "d.jsonl", max_prompt_chars=100, filter_name="strict-match")
    dataset = parse_dataset(rows, "d.jsonl", max_prompt_chars=100)
    assert dataset.kind == "problems" and dataset.items[0].output is None
    assert dataset.options_for(DiagnosisOptions()) == DiagnosisOptions()


def test_an_edited_or_all_passing_samples_file_is_refused(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["target"] = "#### 14"
    with pytest.raises(DatasetError, match="target_hash"):
        parse_dataset(
            "\n".join([json.dumps(edited), *lines[1:]]).encode(), "s.jsonl", max_prompt_chars=8000
        )
    passing = [line for line in lines if json.loads(line)["doc_id"] == 5]
    with pytest.raises(DatasetError, match="all 1 documents passed"):
        parse_dataset("\n".join(passing).encode(), "s.jsonl", max_prompt_chars=8000)
    with pytest.raises(DatasetError, match="longer than 100"):
        parse_dataset(FIXTURE.read_bytes(), FIXTURE.name, max_prompt_chars=100)
