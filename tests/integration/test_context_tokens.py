"""Context spans map to the prompt's own tokens on the real tokenizer, chat template or not."""

from diagnostics.context import prompt_token_positions
from tests.unit.test_context import Q


def test_prompt_span_maps_to_its_tokens(bundled_lm):
    span = (Q.index("The library"), Q.index(" He buys"))
    for chat in (True, False):
        positions = prompt_token_positions(bundled_lm, Q, chat, span)
        ids = bundled_lm.prompt_ids(Q, chat=chat)
        text = bundled_lm.tokenizer.decode(ids[positions], skip_special_tokens=True)
        assert text.strip() == "The library opened 12 years ago."
        assert positions == list(range(positions[0], positions[-1] + 1))
