import torch

from diagnostics.language_model import bos_like_id
from tests.conftest import make_tiny_lm


def test_chat_and_raw_prompts(tiny_lm):
    tok = tiny_lm.tokenizer
    chat = tiny_lm.prompt_ids("what is 2 plus 3 ?")
    raw = tiny_lm.prompt_ids("what is 2 plus 3 ?", chat=False)
    assert tok.convert_ids_to_tokens(int(chat[0])) == "<|im_start|>"
    assert tok.convert_ids_to_tokens(int(chat[-1])) == "assistant"
    body = tok("what is 2 plus 3 ?", add_special_tokens=False)["input_ids"]
    assert raw.tolist() == [bos_like_id(tok), *body]  # the BOS the SAE windows start with
    assert len(chat) > len(raw)


def test_greedy_generation_is_deterministic_and_budgeted(tiny_lm):
    a = tiny_lm.generate("how many clips ?", max_new_tokens=6)
    b = tiny_lm.generate("how many clips ?", max_new_tokens=6)
    assert 1 <= len(a.output_ids) <= 6
    assert torch.equal(a.output_ids, b.output_ids)
    # greedy: each generated token is the argmax given everything before it
    ids = torch.cat([a.prompt_ids, a.output_ids])[None]
    logits = tiny_lm.model(ids).logits[0]
    start = len(a.prompt_ids)
    for i, token in enumerate(a.output_ids):
        assert int(logits[start - 1 + i].argmax()) == int(token)


def test_layer_properties():
    lm = make_tiny_lm(n_layers=6)
    assert lm.n_layers == 6 and lm.default_layer == 3 and lm.d_model == 32
