import pytest
import torch

from diagnostics.hooks import hook_resid_post, parse_hook_name, resid_post_name, residuals_at


def test_hook_names_round_trip():
    assert parse_hook_name(resid_post_name(7)) == 7
    with pytest.raises(ValueError, match="unsupported hook"):
        parse_hook_name("blocks.3.hook_resid_pre")


def test_capture_is_hidden_state_after_layer(tiny_lm):
    ids = tiny_lm.prompt_ids("what is 2 plus 3 ?")[None]  # [1, seq]
    seen = []
    with hook_resid_post(tiny_lm, 1, lambda x: seen.append(x.clone())):
        out = tiny_lm.model(ids, output_hidden_states=True)
    assert seen[0].shape == (1, ids.shape[1], tiny_lm.d_model)
    torch.testing.assert_close(seen[0], out.hidden_states[2], rtol=0, atol=0)


def test_residuals_at_stops_early_and_matches(tiny_lm):
    ids = tiny_lm.prompt_ids("how many apples ?")[None]
    full = tiny_lm.model(ids, output_hidden_states=True).hidden_states
    # the last entry of hidden_states has the final norm applied, so it is not a resid_post
    for layer in range(tiny_lm.n_layers - 1):
        torch.testing.assert_close(residuals_at(tiny_lm, ids, layer), full[layer + 1])


def test_replacement_changes_downstream_logits(tiny_lm):
    ids = tiny_lm.prompt_ids("what is 4 times 5 ?")[None]
    clean = tiny_lm.model(ids).logits
    with hook_resid_post(tiny_lm, 2, lambda x: x * 0):
        zeroed = tiny_lm.model(ids).logits
    after = tiny_lm.model(ids).logits  # the hook is gone again
    assert (clean - zeroed).abs().max() > 1e-3
    torch.testing.assert_close(clean, after, rtol=0, atol=0)


def test_layer_out_of_range(tiny_lm):
    with pytest.raises(ValueError, match="out of range"):
        with hook_resid_post(tiny_lm, tiny_lm.n_layers, lambda x: None):
            pass
