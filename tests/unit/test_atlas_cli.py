"""`driftscope features build|show|search|steer|explain` on the tiny model saved to disk."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from cli.main import app
from diagnostics.sae import save_sae
from tests.conftest import make_random_sae, make_tiny_lm
from tests.unit.test_atlas_build import D_SAE, GATE_LATENT, make_corpus, make_planted_sae

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("features_cli")
    lm = make_tiny_lm()
    lm.model.save_pretrained(root / "model")
    lm.tokenizer.save_pretrained(root / "model")
    docs = make_corpus()
    save_sae(make_planted_sae(lm, docs), root / "sae")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    common = ["--sae", str(root / "sae"), "--model", str(root / "model")]
    result = runner.invoke(
        app,
        ["features", "build", "--source", f"{corpus}:all", *common, "--max-tokens", "6000",
         "--ctx-len", "64", "--batch-size", "8", "--model-dtype", "float32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "median_detection_auroc" in result.stdout
    return root, common


def test_build_writes_the_atlas_next_to_the_sae(built):
    root, _ = built
    assert (root / "sae" / "atlas" / "atlas.json").is_file()
    assert (root / "sae" / "atlas" / "arrays.safetensors").is_file()


def test_build_removes_its_checkpoint_and_the_default_contexts_agree(built):
    from cli.features import OUTPUT_CONTEXTS
    from diagnostics.atlas.token_change import N_CONTEXTS

    root, _ = built
    assert not (root / "sae" / "atlas.build").exists()  # the saved atlas made it unneeded
    assert OUTPUT_CONTEXTS == N_CONTEXTS


def test_a_transcoder_set_gets_one_atlas_for_every_layer(tmp_path, built):
    from tests.unit.test_atlas_resume_and_dictionaries import _random_transcoders

    root, common = built
    lm = make_tiny_lm()
    _random_transcoders(lm, make_corpus(40), tmp_path / "tc")
    result = runner.invoke(
        app,
        ["features", "build", "--source", f"{root / 'corpus.jsonl'}:all", "--model",
         str(root / "model"), "--transcoders", str(tmp_path / "tc"), "--max-tokens", "3000",
         "--ctx-len", "64", "--batch-size", "8", "--model-dtype", "float32"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "atlas of 4 layers x 24 features" in result.stdout and "pass_seconds" in result.stdout
    for layer in range(4):
        assert (tmp_path / "tc" / "atlas" / f"layer_{layer}" / "atlas.json").is_file()
    assert not (tmp_path / "tc" / "atlas.build").exists()
    tc = ["--transcoders", str(tmp_path / "tc")]
    shown = runner.invoke(app, ["features", "show", "1/3", *tc])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("feature 1/3:") and "max-activating contexts" in shown.stdout
    label = shown.stdout.split(":", 1)[1].split("  [")[0].strip()
    found = runner.invoke(app, ["features", "search", "--label", label, *tc, "--json"])
    assert found.exit_code == 0, found.output
    assert "1/3" in [row["id"] for row in json.loads(found.stdout)]
    bad = runner.invoke(app, ["features", "show", "3", *tc])
    assert bad.exit_code == 2 and "LAYER/FEATURE" in bad.output
    missing = runner.invoke(app, ["features", "show", "1/3", "--transcoders", str(tmp_path)])
    assert missing.exit_code == 5 and "features build --transcoders" in missing.output


def test_show_prints_label_contexts_and_json(built):
    root, common = built
    result = runner.invoke(app, ["features", "show", str(GATE_LATENT), "--sae", str(root / "sae")])
    assert result.exit_code == 0, result.output
    assert 'feature 7: "gate"' in result.stdout and "[[gate]]" in result.stdout
    assert (
        "detection AUROC: description" in result.stdout and "full rule (precision" in result.stdout
    )
    assert "next-token lift over" in result.stdout and "promotes:" in result.stdout
    result = runner.invoke(
        app, ["features", "show", str(GATE_LATENT), "--sae", str(root / "sae"), "--json"]
    )
    entry = json.loads(result.stdout)
    assert entry["id"] == GATE_LATENT and entry["is_unigram"] is True
    result = runner.invoke(app, ["features", "show", "9999", "--sae", str(root / "sae")])
    assert result.exit_code == 5 and "out of range" in result.stderr


def test_search_by_text_versus_and_by_label(built):
    root, common = built
    result = runner.invoke(
        app,
        ["features", "search", "the golden gate bridge", "--versus", "the sydney harbour bridge",
         *common, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert GATE_LATENT in [h["id"] for h in hits[:3]]
    result = runner.invoke(
        app, ["features", "search", "--label", "gate", "--sae", str(root / "sae"), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["id"] == GATE_LATENT and rows[0]["description"] == '"gate"'
    assert rows[0]["description_auroc"] > 0.9 and rows[0]["generic"] is None
    generic = runner.invoke(app, ["features", "search", "--label", "!", "--sae", str(root / "sae")])
    assert generic.exit_code == 0 and "[generic]" in generic.stdout


def test_steer_shows_both_outputs_and_the_concept_shift(built):
    root, common = built
    result = runner.invoke(
        app,
        ["features", "steer", "how many apples", "--feature", f"{GATE_LATENT}=10", *common,
         "--max-new-tokens", "4", "--concept", "gate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--- unsteered ---" in result.stdout and "--- steered ---" in result.stdout
    assert "p(next token in" in result.stdout
    bad = runner.invoke(app, ["features", "steer", "x", "--feature", "a=b", *common])
    assert bad.exit_code == 2 and "ID=MULTIPLE" in bad.stderr


def test_missing_atlas_and_unconfigured_llm_give_messages(tmp_path, built, monkeypatch):
    root, _ = built
    for name in ("cfg.json", "sae_weights.safetensors"):  # the SAE without its atlas
        shutil.copy(root / "sae" / name, tmp_path / name)
    result = runner.invoke(app, ["features", "show", "1", "--sae", str(tmp_path)])
    assert result.exit_code == 5 and "features build" in result.stderr
    monkeypatch.delenv("DRIFTSCOPE_LLM_URL", raising=False)
    result = runner.invoke(app, ["features", "explain", "--sae", str(root / "sae")])
    assert result.exit_code == 2 and "DRIFTSCOPE_LLM_URL" in result.stderr


def test_an_atlas_of_another_sae_is_refused_by_every_command(tmp_path, built):
    root, common = built
    lm = make_tiny_lm()
    other = tmp_path / "other-sae"  # same shape, other weights, the first SAE's atlas beside it
    save_sae(make_random_sae(lm.d_model, D_SAE, layer=lm.default_layer, seed=9), other)
    shutil.copytree(root / "sae" / "atlas", other / "atlas")
    model = ["--model", str(root / "model")]
    for args in (
        ["features", "show", str(GATE_LATENT)],
        ["features", "search", "--label", "gate"],
        ["diagnose", "how many apples", "--expected", "3", "--raw", "--mode", "exact",
         "--max-new-tokens", "1", *model],
    ):  # fmt: skip
        result = runner.invoke(app, [*args, "--sae", str(other)])
        assert result.exit_code == 5, (args, result.output)
        assert "built for another SAE" in result.stderr
    # search and steer go on without labels, saying why
    result = runner.invoke(
        app, ["features", "search", "gate", "--sae", str(other), *model, "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "another SAE" in result.stderr
    assert all(h["label"] is None for h in json.loads(result.stdout))
    result = runner.invoke(
        app,
        ["features", "steer", "how many", "-f", "1=2", "--sae", str(other), *model,
         "--max-new-tokens", "2", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "another SAE" in result.stderr and json.loads(result.stdout)["labels"] == {}
