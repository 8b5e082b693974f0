"""What a token is on the surface: a number, a symbol, a question word, a weekday, a word.

Used to group the surface variants of a label rule ("3" / " three" / " third" are the number
three; " cat" / " Cats" are the word cat) and to tell formatting tokens (whitespace, punctuation)
from content.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = (
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth"
).split()
NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)}
NUMBER_WORDS |= {w: 20 + 10 * i for i, w in enumerate(_TENS)}
NUMBER_WORDS |= {w: i for i, w in enumerate(_ORDINALS) if i}
NUMBER_WORDS |= {w[:-1] + "ieth": 20 + 10 * i for i, w in enumerate(_TENS)}
NUMBER_WORDS |= {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
NUMBER_WORDS |= {"hundredth": 100, "thousandth": 1000, "once": 1, "twice": 2, "thrice": 3}
NUMBER_WORDS |= {"single": 1, "double": 2, "triple": 3, "quadruple": 4, "dozen": 12}
NUMBER_NAMES = {v: w for w, v in reversed(list(NUMBER_WORDS.items())) if w in _UNITS + _TENS}
NUMBER_NAMES |= {100: "hundred", 1000: "thousand", 10**6: "million", 10**9: "billion", 12: "twelve"}

QUESTION_WORDS = frozenset("how what why when where who whom whose which".split())
WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())
MONTHS = frozenset(
    "january february march april may june july august september october november december".split()
)
SYMBOL_NAMES = {
    "=": "equals sign",
    "+": "plus sign",
    "-": "hyphen or minus",
    "−": "minus sign",
    "*": "asterisk",
    "×": "times sign",
    "/": "slash",
    "÷": "division sign",
    "%": "percent sign",
    "$": "dollar sign",
    "€": "euro sign",
    "£": "pound sign",
    "#": "hash sign",
    "&": "ampersand",
    "@": "at sign",
    "?": "question mark",
    "!": "exclamation mark",
    ".": "full stop",
    ",": "comma",
    ":": "colon",
    ";": "semicolon",
    "(": "opening bracket",
    ")": "closing bracket",
    "[": "opening bracket",
    "]": "closing bracket",
    '"': "quotation mark",
    "“": "quotation mark",
    "”": "quotation mark",
    "'": "apostrophe",
    "’": "apostrophe",
    "–": "dash",
    "—": "dash",
    "...": "ellipsis",
    "…": "ellipsis",
    "<<": "calculator annotation",
    ">>": "calculator annotation",
}

Kind = str  # "number", "symbol", "space", "question", "weekday", "month", "word"


@dataclass(frozen=True)
class Surface:
    """The surface class of one token's text."""

    kind: Kind
    key: str  # what variants share: "3" for "3"/"three"/"third", "cat" for "cat"/"Cats"
    text: str  # the token as a person reads it (see `show_token`)


def show_token(s: str) -> str:
    """A token as a person reads it: whitespace made visible, surrounding spaces dropped."""
    s = s.replace("\n", "⏎").replace("\t", "⇥")
    return s.strip() or "␣"


def is_format_text(s: str) -> bool:
    """Whitespace, punctuation or symbols only (no letter or digit): formatting, not content."""
    return not any(unicodedata.category(c)[0] in "LN" for c in s)


_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def surface(token: str) -> Surface:
    """Classify a token's text (leading/trailing spaces and case are surface variants)."""
    shown = show_token(token)
    bare = token.strip()
    low = bare.lower()
    if not bare:
        return Surface("space", "⏎" if "\n" in token else "␣", shown)
    if bare.isdigit():
        return Surface("number", str(int(bare)) if len(bare) < 10 else bare, shown)
    if low in NUMBER_WORDS:
        return Surface("number", str(NUMBER_WORDS[low]), shown)
    if is_format_text(bare):
        return Surface("symbol", bare, shown)
    if low in QUESTION_WORDS:
        return Surface("question", low, shown)
    if low in WEEKDAYS or (low.endswith("s") and low[:-1] in WEEKDAYS):
        return Surface("weekday", low.removesuffix("s"), shown)
    if low in MONTHS and low != "may":  # "may" is mostly the verb
        return Surface("month", low, shown)
    return Surface("word", low, shown)


def symbol_name(sym: str) -> str:
    """'equals sign' for '=', 'line break' for '⏎', else 'symbol'."""
    if sym == "⏎":
        return "line break"
    if sym == "␣":
        return "space"
    return SYMBOL_NAMES.get(sym, "symbol")


def number_name(key: str) -> str:
    """'three' for '3' (small numbers and round ones by name, others as digits)."""
    try:
        value = int(key)
    except ValueError:
        return key
    return NUMBER_NAMES.get(value, key)


_SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "ly", "al")


def same_word(a: str, b: str) -> bool:
    """Whether two lower-case words are surface variants of one (plural, tense, stem).

    "cat"/"cats", "box"/"boxes", "compete"/"competition" (a shared stem of >= 3/4 of the shorter
    word, at least 5 letters), "mult"/"multiply" (a prefix of >= 4 letters).
    """
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    if long_.startswith(short) and (len(short) >= 4 or long_[len(short) :] in _SUFFIXES):
        return True
    common = 0
    for x, y in zip(short, long_, strict=False):
        if x != y:
            break
        common += 1
    return common >= 5 and common >= 0.75 * len(short)
