import json

from diagnostics.sae import load_sae, save_sae
from diagnostics.sae.io import WEIGHTS_FILE, record_in_cfg
from tests.conftest import make_random_sae


def test_record_in_cfg_keeps_weights(tmp_path):
    save_sae(make_random_sae(8, 16, layer=1), tmp_path)
    before = (tmp_path / WEIGHTS_FILE).read_bytes()
    record_in_cfg(tmp_path, "eval", {"l0": 3.5})
    assert (tmp_path / WEIGHTS_FILE).read_bytes() == before
    assert json.loads((tmp_path / "cfg.json").read_text())["metadata"]["extra"]["eval"] == {
        "l0": 3.5
    }
    assert load_sae(tmp_path).cfg.metadata.extra["eval"]["l0"] == 3.5
