"""Configuration of a transcoder training run; read from a TOML or JSON file by
`driftscope transcoders train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from diagnostics.sae.training_config import ConfigFile, default_learning_rate


@dataclass
class TranscoderTrainConfig(ConfigFile):
    """Per-layer transcoders for every MLP of a model, trained from one streaming forward pass."""

    sources: list[str]
    """Text files (JSONL `text` / GSM8K `question`+`answer`, or .txt) to stream; their "train"
    split (by document hash, diagnostics.documents) is used. Relative paths are read from the
    working directory."""
    out_dir: str
    """Where checkpoints go and the transcoder set is written (`<out_dir>/transcoders`)."""
    model: str = "bundled"
    """The model whose MLPs are replaced: "bundled", a .gguf file, a directory or a hub id."""
    layers: list[int] | None = None
    """Layers to train (None: every layer)."""
    d_transcoder: int = 1536
    """Features per transcoder."""
    skip: bool = True
    """Add a linear skip term W_skip (arXiv 2501.18823): y ~ features + x W_skip^T."""
    k: int = 32
    """Active features per token on average: BatchTopK while training, saved as JumpReLU with a
    threshold calibrated to k (circuit-tracer's activation for a transcoder set)."""
    batch_size: int = 1024
    """(MLP input, MLP output) pairs per optimizer step of each transcoder."""
    max_tokens: int = 1_500_000
    """Training tokens streamed through the model (each is seen once)."""
    ctx_len: int = 256
    """Tokens per window, BOS first (never trained on, nor are other special tokens)."""
    windows_per_forward: int = 16
    """Windows in one forward pass of the model; its tokens are shuffled into the steps."""
    model_dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """dtype of the model while streaming activations (bf16 is 2-3x faster on CPU; training and
    evaluation of the transcoders are float32)."""
    lr: float | None = None
    """Adam learning rate; None means 1.5e-3 / sqrt(d_transcoder / 2**14), the SAE trainer's rule."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up from 0."""
    decay_fraction: float = 0.2
    """Linear decay to 0 over this final fraction of the steps."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that revives dead features."""
    k_aux: int | None = None
    """Dead features used by AuxK per token; None means d_model // 2."""
    aux_rows: int = 256
    """Rows of each batch on which AuxK is computed."""
    dead_after_tokens: int = 250_000
    """A feature that has not fired on this many consecutive training tokens counts as dead."""
    selection_dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """dtype of the dense encoder pass that only picks active features."""
    threshold_tokens: int = 8_192
    """Tokens, from the start of the training stream, on which the JumpReLU threshold is
    calibrated so that k features fire per token on average."""
    checkpoint_every_s: float = 600.0
    """Seconds between checkpoints (training resumes from the last one)."""
    seed: int = 0
    """Seed of the initialisation and of the window order."""
    save_dtype: Literal["float32", "bfloat16", "float16"] = "float16"
    """dtype of the saved transcoder weights."""
    threads: int | None = None
    """torch threads (None: torch's default)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes recorded with the set (e.g. why these settings)."""

    def __post_init__(self) -> None:
        if min(self.k, self.batch_size, self.d_transcoder, self.max_tokens) < 1:
            raise ValueError("k, batch_size, d_transcoder and max_tokens must be positive")
        if not 0 <= self.decay_fraction < 1:
            raise ValueError("decay_fraction must be in [0, 1)")

    @property
    def total_steps(self) -> int:
        return max(1, self.max_tokens // self.batch_size)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_learning_rate(self.d_transcoder)
