import torch

from diagnostics.hooks import hook_resid_post, residuals_at
from diagnostics.splice import splice_sae


def _ids(lm):
    return lm.prompt_ids("what is 2 plus 3 ? the answer is")[None]


def test_splice_without_edit_is_identity(tiny_lm, tiny_sae):
    ids = _ids(tiny_lm)
    clean = tiny_lm.model(ids).logits
    with splice_sae(tiny_lm, tiny_sae) as rec:
        spliced = tiny_lm.model(ids).logits
    assert (spliced - clean).abs().max() < 1e-5
    assert rec.features.shape == (1, ids.shape[1], tiny_sae.cfg.d_sae)
    assert (rec.features > 0).any()


def test_reconstruction_only_differs(tiny_lm, tiny_sae):
    ids = _ids(tiny_lm)
    clean = tiny_lm.model(ids).logits
    with splice_sae(tiny_lm, tiny_sae, keep_error=False):
        recon = tiny_lm.model(ids).logits
    assert (recon - clean).abs().max() > 1e-4


def test_edit_adds_decoder_difference(tiny_lm, tiny_sae):
    ids = _ids(tiny_lm)
    layer = tiny_sae.cfg.hook_layer
    with splice_sae(tiny_lm, tiny_sae) as rec:
        tiny_lm.model(ids)
    active = int(rec.features[0].sum(0).argmax())

    def ablate(f):
        f = f.clone()
        f[..., active] = 0
        return f

    seen = []
    with splice_sae(tiny_lm, tiny_sae, edit=ablate):
        # registered after the splice, so it sees the spliced output
        with hook_resid_post(tiny_lm, layer, lambda h: seen.append(h.detach())):
            tiny_lm.model(ids)
    edited = seen[0]
    x = residuals_at(tiny_lm, ids, layer)
    special = torch.isin(ids, torch.tensor(tiny_lm.tokenizer.all_special_ids))
    f = tiny_sae.encode(x) * ~special[..., None]  # special tokens stay out of the SAE
    expected = x + tiny_sae.decode(ablate(f)) - tiny_sae.decode(f)
    torch.testing.assert_close(edited, expected, rtol=1e-5, atol=1e-5)
    assert (edited - x).abs().max() > 1e-4


def test_track_grad_gives_feature_gradients(tiny_lm, tiny_sae):
    ids = _ids(tiny_lm)
    with splice_sae(tiny_lm, tiny_sae, track_grad=True) as rec:
        logits = tiny_lm.model(ids).logits  # [1, seq, vocab]
        (logits[0, -1, 5] - logits[0, -1, 6]).backward()
    grad = rec.features.grad
    assert grad is not None and grad.shape == rec.features.shape
    assert grad.abs().sum() > 0
    assert rec.error.grad is not None  # the error term is a node of its own
    special = torch.isin(ids[0], torch.tensor(tiny_lm.tokenizer.all_special_ids))
    assert (grad[0, special] == 0).all()
