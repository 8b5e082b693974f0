"""Shared fixtures: a tiny randomly initialised Llama with a word-level tokenizer (no download)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from diagnostics.language_model import LanguageModel
from diagnostics.sae.config import SaeConfig, SaeMetadata
from diagnostics.sae.modules import JumpReLUSAE

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]
WORDS = (
    "user assistant system what is plus minus times the a answer question how many clips "
    "did she sell in april and may total of apples has more than bridge golden gate sydney "
    "harbour . , ? ! = + - * / # $"
).split() + [str(d) for d in range(10)]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
)


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True)]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_tiny_lm(seed: int = 0, n_layers: int = 4) -> LanguageModel:
    torch.manual_seed(seed)
    tok = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    return LanguageModel(model=model, tokenizer=tok, model_id="tiny-llama", source="memory")


def make_random_sae(d_in: int, d_sae: int, layer: int, seed: int = 0) -> JumpReLUSAE:
    """A JumpReLU SAE with random unit decoder rows. On the tiny model's residual (norm ~0.15)
    almost no latent fires; use make_firing_sae where latents must fire."""
    gen = torch.Generator().manual_seed(seed)
    cfg = SaeConfig(
        architecture="jumprelu",
        d_in=d_in,
        d_sae=d_sae,
        metadata=SaeMetadata(model_name="test", hook_name=f"blocks.{layer}.hook_resid_post"),
    )
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        w = torch.randn(d_sae, d_in, generator=gen)
        sae.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.copy_(-0.1 * torch.rand(d_sae, generator=gen))
        sae.b_dec.copy_(0.01 * torch.randn(d_in, generator=gen))
        sae.threshold.copy_(0.05 + 0.05 * torch.rand(d_sae, generator=gen))
    return sae.eval().requires_grad_(False)


def make_firing_sae(lm: LanguageModel, d_sae: int, seed: int = 0, density: float = 0.1):
    """make_random_sae at the middle layer with encoder biases set from the tiny model's residuals
    on random word text, so each latent fires on about `density` of the text tokens."""
    from diagnostics.hooks import residuals_at

    sae = make_random_sae(lm.d_model, d_sae, layer=lm.default_layer, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    first = len(SPECIALS)  # ids of WORDS come after the special tokens
    ids = torch.randint(first, first + len(WORDS), (16, 24), generator=gen)
    ids[:, 0] = lm.tokenizer.bos_token_id
    x = residuals_at(lm, ids, lm.default_layer)[:, 1:].reshape(-1, lm.d_model)  # [n, d]
    with torch.no_grad():
        pre = sae.pre_acts(x)  # [n, d_sae]
        sae.b_enc += sae.threshold - pre.quantile(1 - density, dim=0)
    return sae


@pytest.fixture(scope="session")
def tiny_lm() -> LanguageModel:
    return make_tiny_lm()


@pytest.fixture(scope="session")
def tiny_sae(tiny_lm: LanguageModel) -> JumpReLUSAE:
    return make_random_sae(tiny_lm.d_model, 128, layer=tiny_lm.default_layer)
