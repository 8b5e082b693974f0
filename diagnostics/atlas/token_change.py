"""The causal output side of latents: which next tokens rise when a latent is clamped (TokenChange).

Latent i is clamped to its atlas max activation at one position t of a held-out context, the SAE
error term kept, so the residual after the hook layer becomes h_t + (max_i - f_i(h_t)) W_dec[i].
Its effect is read in the model's real next-token distribution at t: the lift of token v is
p_clamped(v) - p(v), averaged over H contexts (Gur-Arieh et al. 2025, "TokenChange").

Cost. An edit at position t changes nothing below the hook layer and nothing at earlier
positions, so each context is run once (keeping the keys and values of its earlier positions in the
layers above the hook) and every clamp costs one position through the remaining layers: a batch of
latents against one context is a [B, d] pass through those layers and the unembedding.

Test. The null is a random direction of the same norm (a "latent" that is no SAE feature):
R random unit directions per level of a log-spaced grid of edit norms go through the same
contexts, clamp and selection. The statistic is a latent's largest mean lift over the vocabulary;
a token is shown when its mean lift exceeds the (1 - alpha) quantile of the largest lift that
random directions of the latent's norm (the grid level at or above it, so conservative) give to any
token. Taking the maximum over the vocabulary makes this a family-wise test over tokens (max-T,
Westfall & Young 1993): a latent that acts like a random direction shows a token with probability
at most alpha. Other SAE latents cannot serve as this null: a latent is exchangeable with the other
latents, so "stronger than (1 - alpha) of random latents" would pass alpha of all latents whatever
their effects.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from diagnostics.atlas.dictionary import reads_mlp_input
from diagnostics.atlas.logit_effects import final_norm, unembedding
from diagnostics.hooks import hook_resid_post
from diagnostics.language_model import LanguageModel
from diagnostics.sae.modules import SparseAutoencoder
from diagnostics.transcoders.mlp_activations import hook_mlps

N_CONTEXTS = 256
"""Held-out contexts of the test, enough to pass or fail a latent with confidence. A latent's
lift of its top token varies widely across contexts (it acts in a few): the per-context
coefficient of variation is 3.5 (median, latents that passed the shipped test;
benchmarks/results/atlas_output_contexts.json), so the mean over H contexts has a standard
error of 3.5 / sqrt(H) of itself. At H = 256 that is 22%: a latent whose mean lift is at least
1.44x its threshold passes, and one at most 0.56x fails, on >= 97.7% of fresh draws of the
contexts (2 standard errors). Measured by resampling 256 contexts (400 bootstrap draws, 75
latents of one norm level against 100 random directions): 81% of latents get the same decision
in >= 95% of draws at H = 256, 71% at 64, 64% at 32. Cost: (latents + the null's directions) x H
clamps of 2.9 ms on a free core."""
N_TOKENS = 5  # top tokens kept per latent (shown only when they pass the test)
N_NULL = 100  # random directions per norm level
ALPHA = 0.01
GRID_RATIO = 1.25  # consecutive norm levels differ by this factor
MIN_POSITION = 8  # the edited position is drawn from [MIN_POSITION, MAX_POSITION]
MAX_POSITION = 127


@dataclass
class ContextState:
    """One held-out context, run once: what every clamp at its last position reuses."""

    hidden: torch.Tensor  # [d] residual after the hook layer at the edited position t
    features: torch.Tensor  # [d_sae] SAE features of `hidden`
    keys: list[torch.Tensor]  # per layer above the hook: [kv_heads, t, head_dim], rotated
    values: list[torch.Tensor]  # per layer above the hook: [kv_heads, t, head_dim]
    cos: torch.Tensor  # [1, 1, head_dim] rotary embedding at t
    sin: torch.Tensor
    probs: torch.Tensor  # [vocab] unedited next-token distribution at t


@dataclass
class TokenChange:
    """Per-latent causal output effects and their test (arrays over all latents)."""

    token_ids: np.ndarray  # [d_sae, k] int32, tokens with the largest mean lift, best first
    lifts: np.ndarray  # [d_sae, k] float32, mean p_clamped - p over the contexts
    threshold: np.ndarray  # [d_sae] float32, lift a token must exceed to be shown
    p_value: np.ndarray  # [d_sae] float32, (1 + #null max lifts >= the latent's) / (R + 1)
    edit_norm: np.ndarray  # [d_sae] float32, norm of the clamp edit (max activation x |W_dec|)
    null_norms: np.ndarray  # [levels] float32, the grid of edit norms the nulls were run at
    null_max_lifts: np.ndarray  # [levels, R] float32, each random direction's largest lift
    n_contexts: int
    alpha: float

    @property
    def significant(self) -> np.ndarray:  # [d_sae, k] bool
        return self.lifts > self.threshold[:, None]


class LayerTail:
    """The decoder layers above the hook and the head, in fp32, run for one position at a time.

    Llama-style blocks only (pre-norm attention with rotary embeddings and grouped KV heads, then
    an MLP), which is what the default model and the tiny test model are.
    """

    def __init__(self, lm: LanguageModel, hook_layer: int) -> None:
        layers = lm.decoder_layers
        self.first = hook_layer + 1
        self.layers = [copy.deepcopy(layer).float().eval() for layer in layers[self.first :]]
        for layer in self.layers:
            attn = getattr(layer, "self_attn", None)
            if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj")):
                raise TypeError(f"token change supports Llama-style layers, not {type(layer)}")
        self.norm = copy.deepcopy(final_norm(lm.model)).float().eval()
        self.W_U = unembedding(lm.model).detach().float()  # [vocab, d]
        self.rotary = getattr(lm.model.base_model, "rotary_emb", None)
        if self.rotary is None:
            raise TypeError("token change needs a model with rotary position embeddings")
        cfg = lm.model.config
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", self.heads))
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.scaling = self.head_dim**-0.5
        special = [t for t in lm.tokenizer.all_special_ids if t < self.W_U.shape[0]]
        self.special = torch.tensor(sorted(set(special)), dtype=torch.long)

    def rotary_at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [1, n, head_dim] of positions [n]."""
        probe = torch.zeros(1, len(positions), self.head_dim)
        cos, sin = self.rotary(probe, positions[None])
        return cos.float(), sin.float()

    @torch.no_grad()
    def logits(self, state: ContextState, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, vocab] at the context's position t from residuals [B, d] there."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        b = hidden.shape[0]
        g = self.heads // self.kv_heads
        h = hidden.float()[:, None]  # [B, 1, d]
        for layer, k_pre, v_pre in zip(self.layers, state.keys, state.values, strict=True):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(b, 1, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, self.kv_heads, self.head_dim)  # [B, kv, hd]
            q, k = apply_rotary_pos_emb(q, k, state.cos, state.sin)  # [B, heads|kv, 1, hd]
            q = q.reshape(b, self.kv_heads, g, self.head_dim)  # query head = kv * g + j
            k = k.reshape(b, self.kv_heads, 1, self.head_dim)
            before = torch.einsum("bkgd,ktd->bkgt", q, k_pre)  # [B, kv, g, t]
            own = (q * k).sum(-1, keepdim=True)  # [B, kv, g, 1]
            w = (torch.cat([before, own], -1) * self.scaling).softmax(-1)
            out = torch.einsum("bkgt,ktd->bkgd", w[..., :-1], v_pre) + w[..., -1:] * v[:, :, None]
            h = h + attn.o_proj(out.reshape(b, 1, self.heads * self.head_dim))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        logits = self.norm(h)[:, 0] @ self.W_U.T  # [B, vocab]
        if len(self.special):
            logits[:, self.special] = -torch.inf
        return logits


@torch.no_grad()
def context_state(
    lm: LanguageModel, sae: SparseAutoencoder, tail: LayerTail, ids: Sequence[int]
) -> ContextState:
    """Run the context ids [t + 1] once; the edit goes at its last position t."""
    t = len(ids) - 1
    caught: dict[str, list[torch.Tensor]] = {"k": [], "v": []}
    layers = lm.decoder_layers[tail.first :]
    handles = []
    for layer in layers:
        attn = layer.self_attn
        handles.append(attn.k_proj.register_forward_hook(lambda m, i, o: caught["k"].append(o)))
        handles.append(attn.v_proj.register_forward_hook(lambda m, i, o: caught["v"].append(o)))
    resid: list[torch.Tensor] = []
    encoder_input: list[torch.Tensor] = []  # a transcoder's: the MLP input of its layer

    def read(x: torch.Tensor) -> None:  # [1, t + 1, d]
        resid.append(x[0, -1])

    def read_mlp_input(x: torch.Tensor, _y: torch.Tensor) -> None:  # [1, t + 1, d] each
        encoder_input.append(x[0, -1])

    mlp_hook = {tail.first - 1: read_mlp_input} if reads_mlp_input(sae) else {}
    try:
        with hook_resid_post(lm, tail.first - 1, read), hook_mlps(lm.model, mlp_hook):
            lm.model(input_ids=torch.tensor([list(ids)], device=lm.device))
    finally:
        for handle in handles:
            handle.remove()
    cos_pre, sin_pre = tail.rotary_at(torch.arange(t))
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    keys, values = [], []
    for k, v in zip(caught["k"], caught["v"], strict=True):  # [1, t + 1, kv * hd] each
        k = k[0, :t].float().view(t, tail.kv_heads, tail.head_dim).transpose(0, 1)
        v = v[0, :t].float().view(t, tail.kv_heads, tail.head_dim).transpose(0, 1)
        k_rot, _ = apply_rotary_pos_emb(k[None], k[None], cos_pre, sin_pre)
        keys.append(k_rot[0].contiguous())
        values.append(v.contiguous())
    cos, sin = tail.rotary_at(torch.tensor([t]))
    hidden = resid[0].float().cpu()
    state = ContextState(
        hidden=hidden,
        features=sae.encode((encoder_input or resid)[0].float().cpu()[None])[0].float(),
        keys=keys,
        values=values,
        cos=cos,
        sin=sin,
        probs=torch.zeros(0),
    )
    state.probs = tail.logits(state, hidden[None]).softmax(-1)[0]
    return state


def edited_contexts(
    windows: Iterable[Sequence[int]], n: int, seed: int = 0, is_text=None
) -> list[list[int]]:
    """Up to n context prefixes [t + 1] cut from windows at a seeded random text position t."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for w in windows:
        hi = min(len(w) - 1, MAX_POSITION)
        if hi < MIN_POSITION:
            continue
        t = int(rng.integers(MIN_POSITION, hi + 1))
        if is_text is not None and not is_text(w[t]):
            continue
        out.append(list(w[: t + 1]))
        if len(out) == n:
            break
    return out


def norm_grid(norms: np.ndarray, ratio: float = GRID_RATIO) -> np.ndarray:
    """Log-spaced levels [levels] from the smallest to at least the largest of `norms`."""
    lo, hi = float(norms.min()), float(norms.max())
    n = max(1, math.ceil(math.log(hi / lo) / math.log(ratio)) + 1) if hi > lo else 1
    return (lo * ratio ** np.arange(n)).astype(np.float32)


@torch.no_grad()
def mean_lifts(
    tail: LayerTail, states: list[ContextState], deltas, n: int, *, block: int = 256, skip=None
) -> Iterable[tuple[int, torch.Tensor]]:
    """Yield (start, mean lift [b, vocab]) per block of n edits; deltas(start, stop, state) -> [b, d].
    Blocks whose start `skip(start)` is true are not run (a checkpoint holds them)."""
    for start in range(0, n, block):
        if skip is not None and skip(start):
            continue
        stop = min(start + block, n)
        acc = torch.zeros(stop - start, tail.W_U.shape[0])
        for state in states:
            edited = state.hidden[None] + deltas(start, stop, state)  # [b, d]
            acc += tail.logits(state, edited).softmax(-1) - state.probs
        yield start, acc / len(states)


def block_results(
    kind: str, lifts: Iterable[tuple[int, torch.Tensor]], reduce, checkpoint, n: int, block: int
) -> dict[int, object]:
    """{start: reduce(mean lift)} of every block: the checkpoint's saved ones, the others run
    (through `lifts`, which skips the saved ones) and saved as they finish."""
    out = {}
    if checkpoint is not None:
        for start in range(0, n, block):
            saved = checkpoint.load_block(f"{kind}_{start}")
            if saved is not None:
                out[start] = saved
    for start, lift in lifts:
        out[start] = reduce(lift)
        if checkpoint is not None:
            checkpoint.save_block(f"{kind}_{start}", out[start])
    return out


@torch.no_grad()
def token_change(
    lm: LanguageModel,
    sae: SparseAutoencoder,
    contexts: list[list[int]],
    clamp: np.ndarray,
    *,
    k: int = N_TOKENS,
    n_null: int = N_NULL,
    alpha: float = ALPHA,
    grid_ratio: float = GRID_RATIO,
    latents: Sequence[int] | None = None,
    block: int = 256,
    seed: int = 0,
    progress: bool = True,
    checkpoint=None,
) -> TokenChange:
    """Clamp each latent to `clamp` [d_sae] (its max activation) in every context; test the lifts.

    `contexts` are token-id prefixes whose last position is edited (see `edited_contexts`);
    `latents` restricts the work (the others get no tokens and p-value 1). With a
    `checkpoint` (diagnostics.atlas.checkpoint.BuildCheckpoint), each finished block of latents
    or random directions is saved, and saved blocks are not run again.
    """
    if not contexts:
        raise ValueError("token change needs at least one held-out context")
    d_sae = sae.cfg.d_sae
    tail = LayerTail(lm, sae.cfg.hook_layer)
    bar = tqdm(contexts, desc="token change: contexts", unit="ctx", disable=not progress)
    states = [context_state(lm, sae, tail, c) for c in bar]
    W_dec = sae.W_dec.detach().float().cpu()  # [d_sae, d]
    clamp_t = torch.as_tensor(np.asarray(clamp, dtype=np.float32))
    ids = torch.tensor(sorted(set(range(d_sae) if latents is None else latents)), dtype=torch.long)
    norms = (clamp_t * W_dec.norm(dim=1)).numpy()  # [d_sae]
    tested = ids[clamp_t[ids] > 0]

    out = TokenChange(
        token_ids=np.zeros((d_sae, k), dtype=np.int32),
        lifts=np.zeros((d_sae, k), dtype=np.float32),
        threshold=np.full(d_sae, np.inf, dtype=np.float32),
        p_value=np.ones(d_sae, dtype=np.float32),
        edit_norm=norms.astype(np.float32),
        null_norms=np.zeros(0, dtype=np.float32),
        null_max_lifts=np.zeros((0, n_null), dtype=np.float32),
        n_contexts=len(states),
        alpha=alpha,
    )
    if len(tested) == 0:
        return out

    def latent_deltas(start: int, stop: int, state: ContextState) -> torch.Tensor:
        rows = tested[start:stop]
        return (clamp_t[rows] - state.features[rows])[:, None] * W_dec[rows]

    def top_k(lift: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        top = lift.topk(k, dim=1)
        return top.indices.numpy(), top.values.numpy()

    done = block_results(
        "latents", tqdm(
            mean_lifts(tail, states, latent_deltas, len(tested), block=block,
                       skip=_saved(checkpoint, "latents")),
            total=math.ceil(len(tested) / block), desc="token change: latents", unit="block",
            disable=not progress,
        ), top_k, checkpoint, len(tested), block,
    )  # fmt: skip
    for start, (top_ids, top_vals) in done.items():
        rows = tested[start : start + len(top_ids)].numpy()
        out.token_ids[rows], out.lifts[rows] = top_ids, top_vals

    levels = norm_grid(norms[tested.numpy()], grid_ratio)
    gen = torch.Generator().manual_seed(seed)
    units = torch.randn(len(levels) * n_null, W_dec.shape[1], generator=gen)
    units /= units.norm(dim=1, keepdim=True)
    scale = torch.from_numpy(np.repeat(levels, n_null))  # [levels * R]

    def null_deltas(start: int, stop: int, _state: ContextState) -> torch.Tensor:
        return units[start:stop] * scale[start:stop, None]

    null_max = np.zeros(len(levels) * n_null, dtype=np.float32)
    done = block_results(
        "null", tqdm(
            mean_lifts(tail, states, null_deltas, len(null_max), block=block,
                       skip=_saved(checkpoint, "null")),
            total=math.ceil(len(null_max) / block), desc="token change: null", unit="block",
            disable=not progress,
        ), lambda lift: lift.max(dim=1).values.numpy(), checkpoint, len(null_max), block,
    )  # fmt: skip
    for start, values in done.items():
        null_max[start : start + len(values)] = values
    null_max = null_max.reshape(len(levels), n_null)
    out.null_norms, out.null_max_lifts = levels, null_max

    quantile = np.quantile(null_max, 1 - alpha, axis=1).astype(np.float32)  # [levels]
    rows = tested.numpy()
    level = np.searchsorted(levels, norms[rows] * (1 - 1e-6))  # the level at or above
    level = np.minimum(level, len(levels) - 1)
    out.threshold[rows] = quantile[level]
    top = out.lifts[rows, 0][:, None]
    out.p_value[rows] = (1 + (null_max[level] >= top).sum(1)) / (n_null + 1)
    return out


def _saved(checkpoint, kind: str):
    """skip(start) for `mean_lifts`: the blocks a checkpoint already holds."""
    if checkpoint is None:
        return None
    return lambda start: checkpoint.has_block(f"{kind}_{start}")
