"""The dictionaries an atlas can describe: an SAE on the residual stream, or one layer of a
transcoder set (`diagnostics.transcoders`).

The atlas needs of a dictionary its latents' encoder (`encode`), decoder rows (`W_dec`) and the
layer it writes after (`cfg.hook_layer`); what differs is what the encoder reads. An SAE reads the
residual stream after its layer. A transcoder of layer L reads the MLP input of L (the output of
`post_attention_layernorm`) and writes the MLP output of L, which the block adds to the residual
stream: clamping a transcoder feature is the same edit of the residual after layer L as clamping
an SAE latent there, so the causal output test runs unchanged. A transcoder layer is wrapped as a
JumpReLU dictionary (`TranscoderLayer`) with its encoder, decoder and thresholds; its latent ids
are `layer/feature` outside the atlas, the feature index inside it
(`diagnostics.atlas.transcoder_atlas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from diagnostics.hooks import residuals_at
from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE, SparseAutoencoder
from diagnostics.transcoders.io import load_layer
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs


class TranscoderLayer(JumpReLUSAE):
    """One layer's transcoder as a JumpReLU dictionary that reads the MLP input of its layer:
    f = relu(x W_enc^T + b_enc) where above its threshold (no b_dec subtracted from the input)."""

    reads_mlp_input = True


def transcoder_layer(directory: str | Path, layer: int) -> TranscoderLayer:
    """Layer `layer` of the transcoder set at `directory` (float32)."""
    t = load_layer(directory, layer)
    d_tc, d_model = t["W_enc"].shape  # [d_tc, d_model]
    cfg = SaeConfig(
        architecture="jumprelu",
        d_in=d_model,
        d_sae=d_tc,
        apply_b_dec_to_input=False,
        metadata=SaeMetadata(hook_name=f"blocks.{layer}.hook_resid_post", dataset=str(directory)),
    )
    module = TranscoderLayer(cfg)
    with torch.no_grad():
        module.W_enc.copy_(t["W_enc"].T)
        module.b_enc.copy_(t["b_enc"])
        module.W_dec.copy_(t["W_dec"])
        module.b_dec.copy_(t["b_dec"])
        module.threshold.copy_(t["activation_function.threshold"])
    return module


def reads_mlp_input(dictionary: SparseAutoencoder) -> bool:
    return bool(getattr(dictionary, "reads_mlp_input", False))


def encoder_inputs(
    lm,
    dictionaries: Sequence[SparseAutoencoder],
    ids: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """What each dictionary's encoder reads, [batch, seq, d_model] each, for token ids
    [batch, seq]: the MLP inputs of every transcoder layer come from one forward."""
    mlp_layers = sorted({d.cfg.hook_layer for d in dictionaries if reads_mlp_input(d)})
    mlp_in = {}
    if mlp_layers:
        ins = mlp_inputs_outputs(lm, ids, mlp_layers, mask)[0]  # [n_layers, batch, seq, d]
        mlp_in = dict(zip(mlp_layers, ins, strict=True))
    return [
        mlp_in[d.cfg.hook_layer]
        if reads_mlp_input(d)
        else residuals_at(lm, ids, d.cfg.hook_layer, mask)
        for d in dictionaries
    ]
