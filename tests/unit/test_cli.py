import json

from typer.testing import CliRunner

from cli.main import app
from tests.conftest import make_tiny_lm

runner = CliRunner()


def test_model_info_and_generate_on_a_local_model(tmp_path):
    lm = make_tiny_lm(seed=1)
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    result = runner.invoke(app, ["model", "info", "--model", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["n_layers"] == 4 and info["default_hook"] == "blocks.2.hook_resid_post"
    result = runner.invoke(
        app, ["generate", "how many ?", "-m", str(tmp_path), "--max-new-tokens", "3"]
    )
    assert result.exit_code == 0, result.output


def test_bad_model_gives_message_and_exit_code(tmp_path):
    result = runner.invoke(app, ["model", "info", "--model", str(tmp_path / "absent")])
    assert result.exit_code == 3
    assert "error: model directory not found" in result.stderr
    assert "Traceback" not in result.output
