"""The dictionaries an atlas can describe: an SAE on the residual stream, or one layer of a
transcoder set (`diagnostics.transcoders`).

The atlas needs of a dictionary its latents' encoder (`encode`), decoder rows (`W_dec`) and the
layer it writes after (`cfg.hook_layer`); what differs is what the encoder reads. An SAE reads the
residual stream after its layer. A transcoder of layer L reads the MLP input of L (the output of
`post_attention_layernorm`) and writes the MLP output of L, which the block adds to the residual
stream: clamping a transcoder feature is the same edit of the residual after layer L as clamping
an SAE latent there, so the causal output test runs unchanged. A transcoder layer is wrapped as a
JumpReLU dictionary (`TranscoderLayer`) with its encoder, decoder and thresholds; its latent ids
are `layer/feature` outside the atlas, the feature index inside it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diagnostics.hooks import residuals_at
from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE, SparseAutoencoder
from diagnostics.transcoders.io import load_layer
from diagnostics.transcoders.mlp_activations import mlp_inputs_outputs

TRANSCODER_ATLAS_DIR = "atlas_layers"
"""Under a transcoder set's directory: one atlas per layer, `atlas_layers/layer_{L}/atlas/`."""


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


def transcoder_atlas_dir(directory: str | Path, layer: int) -> Path:
    """Where the atlas of a transcoder layer is saved (pass it to `FeatureAtlas.save`/`load`)."""
    return Path(directory) / TRANSCODER_ATLAS_DIR / f"layer_{layer}"


def reads_mlp_input(dictionary: SparseAutoencoder) -> bool:
    return bool(getattr(dictionary, "reads_mlp_input", False))


def encoder_inputs(
    lm, dictionary: SparseAutoencoder, ids: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """What the dictionary's encoder reads [batch, seq, d_model] for token ids [batch, seq]."""
    layer = dictionary.cfg.hook_layer
    if reads_mlp_input(dictionary):
        return mlp_inputs_outputs(lm, ids, [layer], mask)[0][0]
    return residuals_at(lm, ids, layer, mask)
