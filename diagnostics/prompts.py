"""Reading a prompt: the question it asks last (an eval prompt's worked examples come first)."""

from __future__ import annotations

import re

_QUESTION_MARK = re.compile(r"(?:^|\n)[ \t]*(?:Q|Question|Problem)[ \t]*[:.][ \t]*", re.IGNORECASE)
_ANSWER_MARK = re.compile(r"\n[ \t]*(?:A|Answer)[ \t]*[:.]", re.IGNORECASE)


def last_question(prompt: str) -> str:
    """The question a prompt asks last: the text after its last "Q:"/"Question:" marker (worked
    examples before it are not part of the problem), up to its "A:"/"Answer:"."""
    starts = [m.end() for m in _QUESTION_MARK.finditer(prompt)]
    text = prompt[starts[-1] :] if starts else prompt
    end = _ANSWER_MARK.search(text)
    return (text[: end.start()] if end else text).strip()
