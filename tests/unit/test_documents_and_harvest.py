import json

import numpy as np
import pytest
import torch

from diagnostics.documents import document_split, iter_documents
from diagnostics.hooks import residuals_at
from diagnostics.sae.harvest import (
    ACTS_FILE,
    META_FILE,
    TOKENS_FILE,
    WINDOWS_FILE,
    harvest,
    token_windows,
)


def test_reads_jsonl_gsm8k_and_txt(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello"}) + "\n\n")
    (tmp_path / "g.jsonl").write_text(json.dumps({"question": "q?", "answer": "#### 4"}) + "\n")
    (tmp_path / "t.txt").write_text("para one\n\npara two\n")
    assert list(iter_documents(tmp_path / "a.jsonl")) == ["hello"]
    assert list(iter_documents(tmp_path / "g.jsonl")) == ["q?\n#### 4"]
    assert list(iter_documents(tmp_path / "t.txt")) == ["para one", "para two\n"]
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        list(iter_documents(tmp_path / "bad.jsonl"))


def test_split_is_stable_and_roughly_sized():
    docs = [f"document number {i}" for i in range(4000)]
    held = [d for d in docs if document_split(d, 0.2) == "heldout"]
    assert 0.15 < len(held) / len(docs) < 0.25
    assert held == [d for d in docs if document_split(d, 0.2) == "heldout"]


def test_windows_start_with_bos_and_drop_short_tails(tiny_lm):
    tok = tiny_lm.tokenizer
    doc = " ".join(["what is 2 plus 3 ?"] * 10)  # 60 tokens
    wins = list(token_windows(tok, [doc], ctx_len=16, min_tokens=8))
    assert all(w[0] == tok.bos_token_id and len(w) <= 16 for w in wins)
    assert sum(len(w) - 1 for w in wins) == 60


def test_harvest_writes_masked_activations(tiny_lm, tmp_path):
    docs = ["what is 2 plus 3 ? the answer is 5 .", "how many apples did she sell in may ?"]
    meta = harvest(tiny_lm, docs, tmp_path / "cache", layer=1, ctx_len=8, batch_size=2)
    acts = np.load(tmp_path / "cache" / ACTS_FILE, mmap_mode="r")
    toks = np.load(tmp_path / "cache" / TOKENS_FILE)
    assert acts.shape == (meta.n_tokens, tiny_lm.d_model) and toks.shape == (meta.n_tokens,)
    assert not set(toks.tolist()) & set(tiny_lm.tokenizer.all_special_ids)
    assert (
        json.loads((tmp_path / "cache" / META_FILE).read_text())["hook_name"]
        == "blocks.1.hook_resid_post"
    )
    # windows are stored whole, in shuffled order: the first stored window is one of ours, and its
    # first row is the residual at its first text token
    starts = np.load(tmp_path / "cache" / WINDOWS_FILE)
    first = toks[starts[0] : starts[1]].tolist()
    wins = list(token_windows(tiny_lm.tokenizer, docs, ctx_len=8))
    assert len(starts) == len(wins)
    win = next(w for w in wins if w[1:] == first)
    expected = residuals_at(tiny_lm, torch.tensor([win]), 1)[0, 1]
    np.testing.assert_allclose(acts[starts[0]], expected.numpy(), rtol=2e-3, atol=2e-3)


def test_interleave_draws_on_every_source(tmp_path):
    from diagnostics.documents import interleave_documents

    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"text": f"a{i}"}) + "\n" for i in range(3))
    )
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "b0"}) + "\n")
    docs = list(interleave_documents([tmp_path / "a.jsonl", tmp_path / "b.jsonl"]))
    assert docs == ["a0", "b0", "a1", "a2"]


def test_shuffled_documents_keep_every_source_in_its_share_along_the_stream(tmp_path):
    """A training stream must not run a small source dry early (round-robin does: the late
    transcoder layers then forgot it), nor keep a file's kinds of text together."""
    from diagnostics.documents import shuffled_documents

    (tmp_path / "big.jsonl").write_text(
        "".join(json.dumps({"text": f"big{i}"}) + "\n" for i in range(900))
    )
    (tmp_path / "small.jsonl").write_text(
        "".join(json.dumps({"text": f"small{i}"}) + "\n" for i in range(100))
    )
    paths = [tmp_path / "big.jsonl", tmp_path / "small.jsonl"]
    docs = shuffled_documents(paths, seed=0)
    assert sorted(docs) == sorted(f"big{i}" for i in range(900)) + sorted(
        f"small{i}" for i in range(100)
    )
    for part in (docs[:250], docs[375:625], docs[750:]):  # the small source's 10% in every stretch
        assert 0.05 < sum(d.startswith("small") for d in part) / len(part) < 0.15
    assert docs == shuffled_documents(paths, seed=0) != shuffled_documents(paths, seed=1)
