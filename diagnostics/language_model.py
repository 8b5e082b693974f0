"""A loaded causal LM with its tokenizer: prompting, greedy generation, layer access."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Generation:
    """A greedy continuation of a prompt."""

    prompt_ids: torch.Tensor  # [prompt_len] int64
    output_ids: torch.Tensor  # [n_new] int64, the generated tokens only (EOS included if hit)
    text: str  # the decoded generated tokens, special tokens dropped


@dataclass
class LanguageModel:
    """A causal LM, its tokenizer and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_id: str  # identity recorded in SAEs and reports, e.g. "HuggingFaceTB/SmolLM2-135M-Instruct@Q4_1"
    source: str  # hub id, directory or GGUF path it was loaded from
    load_seconds: float = 0.0
    from_cache: bool = False

    @property
    def n_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def default_layer(self) -> int:
        """The middle layer, n_layers // 2, where the default SAE hooks in."""
        return self.n_layers // 2

    @property
    def decoder_layers(self) -> nn.ModuleList:
        return decoder_layers(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_ids(
        self, prompt: str, *, chat: bool = True, system: str | None = None
    ) -> torch.Tensor:
        """Token ids [seq] of `prompt`, wrapped in the chat template when `chat` and one exists."""
        if chat and self.tokenizer.chat_template:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            enc = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            return enc["input_ids"][0]
        # A raw prompt starts with the BOS-like token, as every SAE/atlas window does; without
        # it the first text token becomes the attention sink, with a residual norm ~50x the
        # others that the SAE never saw (it reads as one huge spurious latent).
        body = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return torch.tensor([bos_like_id(self.tokenizer), *body], dtype=torch.long)

    @torch.no_grad()
    def generate_ids(self, prompt_ids: torch.Tensor, *, max_new_tokens: int = 64) -> torch.Tensor:
        """Greedy continuation [n_new] of `prompt_ids` [seq], stopping at EOS or the budget."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        ids = prompt_ids.to(self.device).unsqueeze(0)  # [1, seq]
        eos = self.tokenizer.eos_token_id
        out = self.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else eos,
        )  # [1, seq + n_new]
        return out[0, ids.shape[1] :].cpu()

    def generate(
        self, prompt: str, *, chat: bool = True, max_new_tokens: int = 64, system: str | None = None
    ) -> Generation:
        """Greedy generation from a text prompt."""
        prompt_ids = self.prompt_ids(prompt, chat=chat, system=system)
        output_ids = self.generate_ids(prompt_ids, max_new_tokens=max_new_tokens)
        text = self.tokenizer.decode(output_ids, skip_special_tokens=True)
        return Generation(prompt_ids=prompt_ids, output_ids=output_ids, text=text)


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """The tokenizer's special-token ids [n_special] (sorted, int64): BOS, chat markers, EOS."""
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def bos_like_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token every sequence starts with: BOS, or EOS for tokenizers without one."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token")
    return int(bos)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of decoder blocks of a causal LM (Llama `model.layers`, GPT-2 `transformer.h`, ...)."""
    n = getattr(model.config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    for attr in ("layers", "h", "blocks"):
        found = getattr(base, attr, None)
        if isinstance(found, nn.ModuleList) and (n is None or len(found) == n):
            return found
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise TypeError(f"cannot find the decoder layers of {type(model).__name__}")
