"""The SAE as it is trained: BatchTopK / TopK with sparse gradients and AuxK.

A dense encoder pass (no gradient, optionally bf16) only decides which latents fire. Their values
are then recomputed in float32 on the selected (token, latent) pairs with gradients, and the
decoder multiplies by the sparse activation matrix (`sparse_ops`). Backward therefore costs O(nnz * d_in)
instead of O(batch * d_sae * d_in): the dense pass is the only full-size matmul per step.

Weights here live in the scaled input space (x * scale); `to_inference` folds the scale back and
returns a JumpReLU (BatchTopK) or TopK module in the SAELens layout with unit-norm decoder rows.

`step` also takes a `target` other than its input: a transcoder (diagnostics.transcoders) is this
SAE reading one activation and predicting another, with its own input centring and output offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE, SparseAutoencoder, TopKSAE
from diagnostics.sae.sparse_ops import SparsePattern, sparse_decode, sparse_encode


@dataclass
class StepOutput:
    """Losses and statistics of one training step."""

    loss: torch.Tensor  # scalar, fvu + alpha * auxk
    fvu: torch.Tensor  # scalar, fraction of variance unexplained on this batch
    auxk: torch.Tensor  # scalar, AuxK loss (0 when no latent is dead)
    fired: torch.Tensor  # [nnz] latent index of every selected (token, latent) pair
    l0: float  # mean active latents per token


class TrainingSae(nn.Module):
    """Encoder W_enc_t [d_sae, d_in] (row per latent), decoder W_dec [d_sae, d_in], biases."""

    def __init__(self, d_in: int, d_sae: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        w = torch.randn(d_sae, d_in, generator=generator)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc_t = nn.Parameter(w.clone())  # tied initialisation
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input [B, d_in]: x less the decoder bias (an SAE's pre-encoder bias)."""
        return x - self.b_dec

    def _offset(self, x: torch.Tensor) -> torch.Tensor:
        """What the output holds besides the latents' writes: the decoder bias [d_out]."""
        return self.b_dec

    def _values(self, x_c: torch.Tensor, sel: SparsePattern) -> torch.Tensor:
        """ReLU pre-activations [nnz] of the selected pairs, with gradients (float32)."""
        return sparse_encode(x_c, self.W_enc_t, self.b_enc, sel)

    def _decode(self, sel: SparsePattern, values: torch.Tensor) -> torch.Tensor:
        """Sum over selected latents of value * W_dec row, per row: [n_rows, d_in] (no bias)."""
        return sparse_decode(values, self.W_dec, sel)

    def step(
        self,
        x: torch.Tensor,
        *,
        k: int,
        target: torch.Tensor | None = None,
        batch_topk: bool,
        dead: torch.Tensor | None = None,
        k_aux: int = 0,
        aux_rows: int = 256,
        auxk_alpha: float = 0.0,
        selection_dtype: torch.dtype = torch.bfloat16,
    ) -> StepOutput:
        """Forward one batch x [B, d_in] (already scaled) and return the losses to backprop.

        The batch is reconstructed, or `target` [B, d_out] (scaled) predicted when given."""
        B = x.shape[0]
        y = x if target is None else target  # [B, d_out]
        x_c = self._center(x)  # [B, d_in]
        with torch.no_grad():
            pre = x_c.to(selection_dtype) @ self.W_enc_t.to(selection_dtype).T  # [B, d_sae]
            pre = torch.relu(pre + self.b_enc.to(selection_dtype))
            n_cand = min(self.d_sae, 4 * k if batch_topk else k)
            cand_vals, cand_idx = pre.topk(n_cand, dim=-1, sorted=False)  # [B, n_cand]
            if batch_topk:
                # the batch's threshold: the B*k-th largest of each row's 4k candidates; then every
                # pair above it, uncapped, as the saved JumpReLU fires at inference (capped at 4k
                # a row, a token whose pre-activations all rise learned nothing about its 5th..nth
                # candidates, which then fired by the hundreds on held-out text)
                n_top = min(B * k, cand_vals.numel())
                thr = cand_vals.flatten().topk(n_top, sorted=False).values.min()
                rows, cols = ((pre >= thr) & (pre > 0)).nonzero(as_tuple=True)
            else:
                keep = cand_vals.flatten() > 0
                rows = torch.arange(B).repeat_interleave(n_cand)[keep]
                cols = cand_idx.flatten()[keep]
        sel = SparsePattern(rows, cols, B, self.d_sae)
        values = self._values(x_c, sel)  # [nnz]
        y_hat = self._decode(sel, values) + self._offset(x)  # [B, d_out]
        total_var = (y - y.mean(0)).pow(2).sum(-1).mean()
        fvu = (y_hat - y).pow(2).sum(-1).mean() / total_var
        auxk = torch.zeros((), dtype=x.dtype)
        if dead is not None and k_aux > 0 and auxk_alpha > 0 and bool(dead.any()):
            auxk = self._auxk(y, y_hat, x_c, pre, dead, k_aux, aux_rows)
        loss = fvu + auxk_alpha * auxk
        return StepOutput(loss, fvu.detach(), auxk.detach(), sel.cols, len(values) / B)

    def _auxk(self, y, y_hat, x_c, pre, dead, k_aux, aux_rows) -> torch.Tensor:
        """Reconstruct the residual error with the top k_aux dead latents (Gao et al. App. B.1)."""
        r = min(aux_rows, y.shape[0])
        dead_idx = dead.nonzero().squeeze(1)  # [n_dead]
        kk = min(k_aux, len(dead_idx))
        with torch.no_grad():
            vals, idx = pre[:r, dead_idx].topk(kk, dim=-1, sorted=False)  # [r, kk]
            keep = vals.flatten() > 0
            rows = torch.arange(r).repeat_interleave(kk)[keep]
            cols = dead_idx[idx.flatten()[keep]]
        if len(cols) == 0:
            return torch.zeros((), dtype=y.dtype)
        sel = SparsePattern(rows, cols, r, self.d_sae)
        err = (y[:r] - y_hat[:r]).detach()  # [r, d_out]
        err_hat = self._decode(sel, self._values(x_c[:r], sel))  # [r, d_out]
        var = (err - err.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        scale = min(len(dead_idx) / k_aux, 1.0)
        return scale * (err_hat - err).pow(2).sum(-1).mean() / var

    @torch.no_grad()
    def batch_topk_threshold(self, x: torch.Tensor, k: int, chunk: int = 2048) -> float:
        """The activation level above which, on x [n, d_in] (scaled), k latents fire per token on
        average: the JumpReLU threshold that reproduces BatchTopK at inference."""
        n_top = len(x) * k  # exact: the global top n_top lies within each chunk's own top n_top
        candidates = []
        for start in range(0, len(x), chunk):
            pre = torch.relu(self._center(x[start : start + chunk]) @ self.W_enc_t.T + self.b_enc)
            candidates.append(pre.flatten().topk(min(n_top, pre.numel()), sorted=False).values)
        flat = torch.cat(candidates)
        return float(flat.topk(n_top, sorted=True).values[-1])

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Drop the gradient component along each decoder row (rows stay unit norm)."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(-1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def to_inference(
        self,
        *,
        scale: float,
        architecture: str,
        k: int,
        threshold: float,
        metadata: SaeMetadata,
    ) -> SparseAutoencoder:
        """Fold the input scale into the weights and return the inference module.

        Training computes f = relu((x*s - b_dec) W_enc + b_enc) and x*s ~ f W_dec + b_dec. With
        f' = f / s the same map in original units is: W_enc unchanged, b_enc / s, b_dec / s,
        threshold / s, and W_dec unchanged (unit rows), so a feature's activation is the norm of
        what it writes into the residual stream.
        """
        d_sae, d_in = self.W_dec.shape
        kind = "jumprelu" if architecture == "batchtopk" else "topk"
        cfg = SaeConfig(
            architecture=kind,
            d_in=d_in,
            d_sae=d_sae,
            k=k if kind == "topk" else None,
            apply_b_dec_to_input=True,
            metadata=metadata,
        )
        sae: SparseAutoencoder = JumpReLUSAE(cfg) if kind == "jumprelu" else TopKSAE(cfg)
        sae.W_enc.copy_(self.W_enc_t.T)
        sae.b_enc.copy_(self.b_enc / scale)
        sae.W_dec.copy_(self.W_dec)
        sae.b_dec.copy_(self.b_dec / scale)
        if isinstance(sae, JumpReLUSAE):
            sae.threshold.fill_(threshold / scale)
        return sae.eval().requires_grad_(False)


@dataclass
class TrainingPart:
    """One dictionary being trained: its module, its optimizer and its counter of tokens since
    each feature last fired."""

    model: TrainingSae
    optim: torch.optim.Optimizer
    since_fired: torch.Tensor  # [d_sae] int64

    def update(self, out: StepOutput, lr: float, rows: int) -> None:
        """Backpropagate a step's loss and take the Adam step at `lr` (decoder rows stay unit
        norm); features that fired reset their counter, the others age by `rows` tokens."""
        for group in self.optim.param_groups:
            group["lr"] = lr
        self.optim.zero_grad(set_to_none=True)
        out.loss.backward()
        self.model.remove_parallel_decoder_grad()
        self.optim.step()
        self.model.normalize_decoder()
        self.since_fired += rows
        self.since_fired[out.fired] = 0
