"""A transcoder as it is trained: the SAE trainer's BatchTopK/TopK module reading the MLP input and
predicting the MLP output, with an optional linear skip term.

Training works in scaled units (x * s_in, y * s_out, each with mean squared norm d_model).
`export` folds the scales and the input centring back and returns circuit-tracer's tensors, so a
feature's activation is the norm of what it writes into the MLP output.
"""

from __future__ import annotations

import torch
from torch import nn

from diagnostics.sae.training_sae import TrainingSae


class TrainingTranscoder(TrainingSae):
    """Encoder W_enc_t [d_tc, d_model], decoder W_dec [d_tc, d_model] (unit rows), b_enc [d_tc],
    b_dec [d_model], optional W_skip [d_model_out, d_model_in], and the fixed input mean."""

    def __init__(
        self, d_model: int, d_tc: int, *, skip: bool, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(d_model, d_tc, generator=generator)
        self.register_buffer("x_mean", torch.zeros(d_model))  # [d_model], scaled input mean
        self.W_skip = nn.Parameter(torch.zeros(d_model, d_model)) if skip else None

    def init_from(self, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-2) -> None:
        """Centre the encoder on the mean input and start the output at the best linear fit of
        y [n, d] on x [n, d] (scaled): b_dec at the mean output and, with a skip term, W_skip at
        the ridge least-squares solution, so the features start by learning what is nonlinear."""
        with torch.no_grad():
            self.x_mean.copy_(x.mean(0))
            self.b_dec.copy_(y.mean(0))
            if self.W_skip is None:
                return
            xc, yc = (x - x.mean(0)).double(), (y - y.mean(0)).double()  # [n, d]
            gram = xc.T @ xc + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
            w = torch.linalg.solve(gram, xc.T @ yc)  # [d_in, d_out]
            self.W_skip.copy_(w.T.float())
            self.b_dec.sub_(self.x_mean @ self.W_skip.T)  # the skip term reads uncentred x

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.x_mean

    def _offset(self, x: torch.Tensor) -> torch.Tensor:
        if self.W_skip is None:
            return self.b_dec
        return self.b_dec + x @ self.W_skip.T  # [B, d_model]

    @torch.no_grad()
    def export(self, *, scale_in: float, scale_out: float, threshold: float) -> dict:
        """circuit-tracer's layer tensors in original units (float32).

        Trained: f = relu((x s_in - m) W_enc^T + b_enc) (JumpReLU at threshold t), and
        y s_out ~ f W_dec + b_dec + x s_in W_skip^T. With f' = f / s_out:
        f' = (x (s_in / s_out) W_enc^T + (b_enc - m W_enc^T) / s_out), threshold t / s_out,
        y ~ f' W_dec + b_dec / s_out + x (s_in / s_out) W_skip^T.
        """
        ratio = scale_in / scale_out
        tensors = {
            "W_enc": (self.W_enc_t * ratio).contiguous(),  # [d_tc, d_model]
            "W_dec": self.W_dec.clone(),  # [d_tc, d_model]
            "b_enc": (self.b_enc - self.W_enc_t @ self.x_mean) / scale_out,  # [d_tc]
            "b_dec": self.b_dec / scale_out,  # [d_model]
            "activation_function.threshold": torch.full((self.d_sae,), threshold / scale_out),
        }
        if self.W_skip is not None:
            tensors["W_skip"] = (self.W_skip * ratio).contiguous()  # [d_model, d_model]
        return {k: v.detach().float().cpu() for k, v in tensors.items()}
