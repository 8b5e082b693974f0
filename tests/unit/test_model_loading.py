import pytest
import torch

from diagnostics.errors import ModelLoadError
from diagnostics.model_loading import load_model
from tests.conftest import make_tiny_lm


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    lm = make_tiny_lm(seed=3)
    path = tmp_path_factory.mktemp("tiny-model")
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path, lm


def test_loads_a_local_directory(saved_tiny):
    path, original = saved_tiny
    lm = load_model(str(path))
    assert lm.model_id == str(path) and lm.n_layers == original.n_layers
    ids = lm.prompt_ids("what is 2 plus 3 ?")
    torch.testing.assert_close(lm.model(ids[None]).logits, original.model(ids[None]).logits)
    assert lm.generate("how many ?", max_new_tokens=3).output_ids.numel() >= 1


def test_missing_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="model directory not found"):
        load_model(str(tmp_path / "nope"))


def test_missing_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "model.gguf"))


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_model("someone/model-that-is-not-cached")


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_model(str(tmp_path))
