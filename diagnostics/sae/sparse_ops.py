"""Autograd ops on a sparse set of (row, latent) pairs, using CSR matmuls.

Training an SAE only ever needs the activations of the few latents that fire. `SparsePattern`
stores which (row, latent) pairs those are, in CSR form for both G [rows, latents] and its
transpose. `sparse_encode` and `sparse_decode` then cost O(nnz * d_in) forward and backward,
instead of the O(rows * d_sae * d_in) of dense matmuls, and never materialise [nnz, d_in] gathers.
"""

from __future__ import annotations

import warnings

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class SparsePattern:
    """Positions of nnz selected pairs in an [n_rows, n_cols] matrix, in CSR order."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> None:
        order = torch.argsort(rows * n_cols + cols)  # row-major: CSR needs sorted rows
        self.rows, self.cols = rows[order], cols[order]  # [nnz], [nnz]
        self.shape = (n_rows, n_cols)
        self.crow = _crow(self.rows, n_rows)  # [n_rows + 1]
        t_order = torch.argsort(self.cols * n_rows + self.rows)  # for the transpose
        self.t_perm = t_order  # value i of the transpose is value t_perm[i] of the pattern
        self.t_crow = _crow(self.cols[t_order], n_cols)  # [n_cols + 1]
        self.t_col = self.rows[t_order]  # [nnz]

    def __len__(self) -> int:
        return int(self.rows.numel())

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """The [n_rows, n_cols] CSR matrix with `values` [nnz] at the pattern."""
        return torch.sparse_csr_tensor(
            self.crow, self.cols, values, self.shape, check_invariants=False
        )

    def csr_t(self, values: torch.Tensor) -> torch.Tensor:
        """The transpose [n_cols, n_rows] as CSR."""
        n_rows, n_cols = self.shape
        return torch.sparse_csr_tensor(
            self.t_crow, self.t_col, values[self.t_perm], (n_cols, n_rows), check_invariants=False
        )

    def sample(self, a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
        """(a @ b_t.T) at the pattern's positions [nnz], for a [n_rows, d], b_t [n_cols, d]."""
        ones = self.csr(torch.ones(len(self), dtype=a.dtype))
        return torch.sparse.sampled_addmm(ones, a, b_t.T, beta=0.0).values()


def _crow(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])


class _SparseEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, pattern: SparsePattern):  # x [R, d], weight [L, d], bias [L]
        pre = pattern.sample(x, weight) + bias[pattern.cols]  # [nnz]
        ctx.pattern = pattern
        ctx.save_for_backward(x, weight, pre > 0)
        return torch.relu(pre)

    @staticmethod
    def backward(ctx, grad):  # grad [nnz]
        x, weight, positive = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        g = grad * positive
        grad_x = p.csr(g) @ weight if ctx.needs_input_grad[0] else None  # [R, d]
        grad_w = p.csr_t(g) @ x if ctx.needs_input_grad[1] else None  # [L, d]
        grad_b = (
            torch.bincount(p.cols, weights=g, minlength=weight.shape[0])
            if ctx.needs_input_grad[2]
            else None
        )
        return grad_x, grad_w, grad_b, None


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, weight, pattern: SparsePattern):  # values [nnz], weight [L, d]
        ctx.pattern = pattern
        ctx.save_for_backward(values, weight)
        return pattern.csr(values) @ weight  # [R, d]

    @staticmethod
    def backward(ctx, grad):  # grad [R, d]
        values, weight = ctx.saved_tensors
        p: SparsePattern = ctx.pattern
        grad_v = p.sample(grad.contiguous(), weight) if ctx.needs_input_grad[0] else None
        grad_w = p.csr_t(values) @ grad if ctx.needs_input_grad[1] else None
        return grad_v, grad_w, None


def sparse_encode(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pattern: SparsePattern
) -> torch.Tensor:
    """relu(x @ weight.T + bias) at the pattern's (row, latent) pairs: [nnz]."""
    return _SparseEncode.apply(x, weight, bias, pattern)


def sparse_decode(
    values: torch.Tensor, weight: torch.Tensor, pattern: SparsePattern
) -> torch.Tensor:
    """Sum over each row's selected latents of value * weight row: [n_rows, d]."""
    return _SparseDecode.apply(values, weight, pattern)
