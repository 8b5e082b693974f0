"""A loaded causal LM with its tokenizer: prompting, greedy generation, layer access."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria

StopRule = Callable[[str], bool]
"""Given the text a row has generated so far, is it done? (e.g. answers.answer_is_final)"""


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
    def generate_ids(
        self, prompt_ids: torch.Tensor, *, max_new_tokens: int = 64, stop: StopRule | None = None
    ) -> torch.Tensor:
        """Greedy continuation [n_new] of `prompt_ids` [seq], stopping at EOS, the budget, or
        when `stop` says the text so far is done."""
        return self.generate_rows([prompt_ids], max_new_tokens=max_new_tokens, stop=stop).ids[0]

    @torch.no_grad()
    def generate_rows(
        self,
        prompts: list[torch.Tensor],
        *,
        max_new_tokens: int = 64,
        stop: StopRule | None = None,
        first_logits: bool = False,
    ) -> Rows:
        """Greedy continuations of several prompts [seq_i] in one batch (left-padded when their
        lengths differ), each row stopping on its own at EOS or `stop`. A feature edit that
        treats rows differently (a spliced SAE) sees them in this order."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        width = max(len(p) for p in prompts)
        pad = self.pad_id
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):  # left padding: every row ends at the same column
            ids[r, width - len(p) :] = p
            mask[r, width - len(p) :] = 1
        criteria = _RowStop(self.tokenizer, width, stop, len(prompts))
        out = self.model.generate(
            ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=pad,
            stopping_criteria=[criteria],
            return_dict_in_generate=True,
            output_logits=first_logits,
        )
        new = out.sequences[:, width:].cpu()  # [rows, n_new]
        rows = []
        for r in range(len(prompts)):
            end = criteria.ended_at[r] if criteria.ended_at[r] is not None else new.shape[1]
            row = new[r, :end]
            eos = self.tokenizer.eos_token_id
            if eos is not None and (row == eos).any():  # keep EOS, drop what comes after it
                row = row[: int((row == eos).nonzero()[0]) + 1]
            rows.append(row)
        logits = out.logits[0].float().cpu() if first_logits else None  # [rows, vocab]
        return Rows(ids=rows, first_logits=logits)

    @torch.no_grad()
    def last_logits(self, rows: list[torch.Tensor], *, batch_size: int = 8) -> torch.Tensor:
        """Logits [rows, vocab] at the last token of each id row [seq_i], in left-padded batches
        (positions counted from each row's first real token, so padding changes nothing)."""
        out = []
        for b in range(0, len(rows), batch_size):
            chunk = rows[b : b + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, row in enumerate(chunk):
                ids[r, width - len(row) :] = row
                mask[r, width - len(row) :] = 1
            positions = (mask.cumsum(1) - 1).clamp_min(0)
            logits = self.model(
                ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                logits_to_keep=1,
            ).logits[:, -1]
            out.append(logits.float().cpu())
        return torch.cat(out)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return int(pad if pad is not None else 0)

    def generate(
        self, prompt: str, *, chat: bool = True, max_new_tokens: int = 64, system: str | None = None
    ) -> Generation:
        """Greedy generation from a text prompt."""
        prompt_ids = self.prompt_ids(prompt, chat=chat, system=system)
        output_ids = self.generate_ids(prompt_ids, max_new_tokens=max_new_tokens)
        text = self.tokenizer.decode(output_ids, skip_special_tokens=True)
        return Generation(prompt_ids=prompt_ids, output_ids=output_ids, text=text)


@dataclass(frozen=True)
class Rows:
    """Greedy continuations of a batch of prompts."""

    ids: list[torch.Tensor]  # per row: the generated tokens [n_new_r] (EOS included if hit)
    first_logits: torch.Tensor | None = None  # [rows, vocab] logits of each row's first token


class _RowStop(StoppingCriteria):
    """Stops each row on its own when `stop` says its text is done; remembers where."""

    def __init__(self, tokenizer, prompt_width: int, stop: StopRule | None, rows: int) -> None:
        self.tokenizer, self.width, self.stop = tokenizer, prompt_width, stop
        self.ended_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.stop is None:
            return done
        n = input_ids.shape[1] - self.width
        for r in range(input_ids.shape[0]):
            if self.ended_at[r] is not None:
                done[r] = True
                continue
            text = self.tokenizer.decode(input_ids[r, self.width :], skip_special_tokens=True)
            if self.stop(text):
                self.ended_at[r] = n
                done[r] = True
        return done


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
