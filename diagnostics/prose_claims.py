"""Quantities a solution's sentences assert, checked against the question sentence that gave
each number.

A stated number (one outside any equation, `solution_steps.Quantity`) is a claim about
something. It is checked against the question clause its value comes from:
- `copied`: the claim copies a question clause word for word but with another number;
- `invented`: the number is in neither the question nor the known values (earlier results,
  gold values, small constants), nor one operation away from two of them;
- `comparison_turned`: the claim compares the same two people the other way round ("Alyana
  is 2 years older than Chenny" for "Chenny is 2 years older than Alyana"), or with the
  opposite word (more <-> fewer, older <-> younger);
- `comparative_dropped`: the question states it as a difference ("5 feet wider than the
  chair", "3 more than") and the claim states it as the amount itself ("the width is 5 feet");
- `total_to_one`: the question states it as a total ("36 Oreos total", "Together Lily, David
  and Bodhi collected 43") and the claim gives it to one person without a total word;
- `entity`: the claim opens with a name of the question the number's question sentence never
  mentions, or the number sits in a relative clause about someone else ("..., who is twice as
  old as their 5-year-old cousin" for "Sam is 5 years old");
- `attribute`: the noun written right after the number names something the question counts
  with another number ("4 sheets" when the question has "four classes" and "5 sheets"), or a
  count of the question is restated as a percentage ("30%" for "30 trees").
`relation_op` gives the operation a question's wording attaches to a number ("2 fewer ...
than": additive; "3 times as many": multiplicative), for `claim_checks` to test equations by.
These are lexical checks on clauses (`number_bindings`), not parsing: a relation phrased with
other words is missed, and a clause that merely contains a comparative can be misread as one
(see docs/diagnosis.md). Every flag is a reading of prose, so `claim_checks` marks its location
`uncertain`; a replacement is offered where the expected answer (a claim about the asked
quantity) or a question number supports it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations

from diagnostics.equations import Number, apply_op, format_number
from diagnostics.number_bindings import Binding, content_words, lower_name, stem, subject_match
from diagnostics.solution_steps import sentence_spans

_COMPARATIVE = re.compile(
    r"\b(?:more|less|fewer|than|older|younger|longer|shorter|taller|wider|narrower|heavier|"
    r"lighter|bigger|smaller|faster|slower|cheaper|farther|further|increase[sd]?|"
    r"decrease[sd]?)\b",
    re.IGNORECASE,
)
"""A question clause that states its number as a difference."""
_KEEPS_DIFFERENCE = re.compile(
    _COMPARATIVE.pattern + r"|\b(?:by|above|over|extra|additional|bonus|plus|added|another)\b",
    re.IGNORECASE,
)
"""A claim that still states the number as a difference (or an addition)."""
_TOTAL = re.compile(r"\b(?:total|together|altogether|combined|in all)\b", re.IGNORECASE)
_GROUP = re.compile(r"\b(?:together|combined|altogether|both|in all)\b", re.IGNORECASE)
_CONTINUES = re.compile(r"^\s*(?:which|so|and|then|that)\b", re.IGNORECASE)
"""A clause that goes on about its sentence's subject."""
_RELATIVE = re.compile(r"^\s*(?:who|whose|which|that)\b", re.IGNORECASE)
_NOUN_AFTER = re.compile(r"\s*(?:-\s*)?([A-Za-z][A-Za-z'-]*)")
_UNIT_WORDS = {
    "dollar", "dollars", "cent", "cents", "percent", "year", "years", "old", "time", "times",
    "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month", "months",
    "mile", "miles", "foot", "feet", "inch", "inches", "pound", "pounds", "more", "less",
    "fewer", "each", "per", "of", "x",
}  # fmt: skip
"""Words after a number that say its unit or relation, not what it counts."""


SMALL = (0.0, 1.0, 2.0, 10.0, 100.0)
"""Numbers a sentence may state without a source (list markers, halves, tens, percent)."""


@dataclass(frozen=True)
class ProseMisread:
    """A stated quantity the question does not support."""

    kind: str  # invented | copied | comparison_turned | comparative_dropped | total_to_one |
    # entity | attribute
    number: Number  # as the output writes it
    clause: tuple[int, int]  # [start, end) of the output clause that states it
    evidence: str
    replacement: str | None  # the supported value or name for `edit` (None: no correction)
    edit: tuple[int, int] | None  # characters `replacement` rewrites (the number or a name)


def one_op_away(value: float, known: list[float]) -> bool:
    """Is `value` a sum, difference, product or quotient of two known values (a result the
    sentence computed without writing the equation)?"""
    pool = list(dict.fromkeys(known))[:40]
    for a, b in combinations(pool, 2):
        for x, y in ((a, b), (b, a)):
            for op in "+-*/":
                r = apply_op(op, x, y)
                if r is not None and math.isclose(r, value, rel_tol=1e-9, abs_tol=1e-9):
                    return True
    return False


def check_claim(
    output: str,
    number: Number,
    clause: tuple[int, int],
    question: str,
    bindings: list[Binding],
    names: frozenset[str],
    known: list[float],
    asked_value: float | None,
) -> ProseMisread | None:
    """Is the claim output[clause] stating `number` supported by the question? None when it
    agrees or the evidence is not clear."""
    text = output[clause[0] : clause[1]]
    copied = _copied_with_another_number(text, number, bindings)
    if copied is not None and not _given_to_another(text, number, bindings, names):
        return ProseMisread(
            "copied",
            number,
            clause,
            f"restates '{copied.clause.strip()}' with {number.text} for {copied.number.text}",
            format_number(copied.number.value),
            (number.start, number.end),
        )
    own = [b for b in bindings if math.isclose(b.number.value, number.value, abs_tol=1e-9)]
    if not number.word and any(not b.number.word for b in own):
        own = [b for b in own if not b.number.word]  # '2 miles' is the question's '2', not 'half'
    counted = [b for b in bindings if not b.number.percent and not b.number.word]
    if (
        number.percent
        and not own
        and any(math.isclose(b.number.value, number.written) for b in counted)
    ):
        bound = next(b for b in counted if math.isclose(b.number.value, number.written))
        return ProseMisread(
            "attribute",
            number,
            clause,
            f"the question's {bound.number.text} is a count ('{bound.clause.strip()}'), not a "
            "percentage",
            None,
            (number.start, number.end),
        )
    if not own:
        if number.value in SMALL or any(math.isclose(number.value, k, abs_tol=1e-9) for k in known):
            return None
        if one_op_away(number.value, known):
            return None
        return ProseMisread(
            "invented",
            number,
            clause,
            f"states {number.text}, which is neither in the question nor an earlier result",
            None,
            None,
        )
    if len(own) != 1 or own[0].number.word and not number.word and number.value <= 2:
        return None  # stated more than once in the question, or 'half'/'twice' as a small number
    bound = own[0]
    subject = subject_match(text, names)
    if subject is None and _CONTINUES.search(text):  # 'which is 36', 'so he has 4': the
        subject = subject_match(_sentence_of(output, clause[0]), names)  # sentence's subject
    q_sentence = _sentence_of(question, bound.number.start)
    asked = _asked_sentence(question)
    about_asked = subject is not None and lower_name(subject.group(0)) in _words(asked)
    answer = format_number(asked_value) if asked_value is not None else None
    turned = _turned_around(text, bound.clause, names, {stem(w) for w in _words(question)})
    if turned is not None:
        return ProseMisread(
            "comparison_turned",
            number,
            clause,
            f"the question says '{bound.clause.strip()}'; '{text.strip()}' {turned}",
            None,
            (number.start, number.end),
        )
    if _COMPARATIVE.search(bound.clause) and not _KEEPS_DIFFERENCE.search(text):
        return ProseMisread(
            "comparative_dropped",
            number,
            clause,
            f"the question gives {bound.number.text} as a difference ('{bound.clause.strip()}'); "
            f"'{text.strip()}' states it as the amount itself",
            answer if about_asked else None,
            (number.start, number.end),
        )
    total_lead = q_sentence[: bound.number.start - _start_of(question, bound.number.start) + 40]
    group = (  # a total over several people, not one person's own
        _GROUP.search(q_sentence)
        or len(names & _words(q_sentence)) > 1
        or (bound.subject is None and len(names & _words(question)) > 1)
    )
    if (
        subject is not None
        and group
        and (_TOTAL.search(bound.clause) or _TOTAL.search(total_lead))
        and not _TOTAL.search(text)
    ):
        return ProseMisread(
            "total_to_one",
            number,
            clause,
            f"the question gives {bound.number.text} as a total ('{bound.clause.strip()}'), not "
            f"as {subject.group(0)}'s alone",
            answer if about_asked else None,
            (number.start, number.end),
        )
    if subject is not None and bound.subject is None:  # a named subject: number_bindings
        name = lower_name(subject.group(0))
        stems = {stem(w) for w in names & _words(q_sentence)}
        others = stems - {stem(name)}  # the question sentence is about someone else
        relative = _RELATIVE.search(bound.clause) and _word_before(question, bound) != name
        if (others and stem(name) not in stems) or (relative and name not in _words(bound.clause)):
            return ProseMisread(
                "entity",
                number,
                clause,
                f"the question gives {bound.number.text} to '{bound.clause.strip()}', not to "
                f"{subject.group(0)}",
                answer if about_asked else None,
                (number.start, number.end),
            )
    return _attribute_swap(output, number, clause, question, bound, bindings)


def _attribute_swap(
    output: str,
    number: Number,
    clause: tuple[int, int],
    question: str,
    bound: Binding,
    bindings: list[Binding],
) -> ProseMisread | None:
    """The noun right after the number is one the question counts with another number."""
    mine = _noun_after(output, number.end)
    theirs = _noun_after(question, bound.number.end)
    if mine is None or theirs is None or stem(mine) == stem(theirs):
        return None
    if stem(theirs) in content_words(output[clause[0] : clause[1]]):
        return None  # 'mine' only qualifies the question's own noun ('2 new games')
    if stem(mine) in content_words(bound.clause):
        return None
    others = [
        b
        for b in bindings
        if b is not bound
        and not math.isclose(b.number.value, number.value)
        and (n := _noun_after(question, b.number.end)) is not None
        and stem(n) == stem(mine)
    ]
    if (
        not others
        and stem(mine) in content_words(question)
        and stem(theirs) in content_words(question)
    ):
        return ProseMisread(  # the question counts `mine` without a number of its own
            "attribute",
            number,
            clause,
            f"the question gives {bound.number.text} to {theirs} ('{bound.clause.strip()}'), "
            f"not to {mine}",
            None,
            (number.start, number.end),
        )
    if len(others) != 1:
        return None
    right = others[0]
    return ProseMisread(
        "attribute",
        number,
        clause,
        f"the question has {right.number.text} {mine} ('{right.clause.strip()}'); "
        f"{bound.number.text} is '{bound.clause.strip()}'",
        format_number(right.number.value),
        (number.start, number.end),
    )


def _noun_after(text: str, end: int) -> str | None:
    """The first word after a number when it names what the number counts ('16 red
    gumballs' -> 'red'); None for a unit or relation word or none at all."""
    m = _NOUN_AFTER.match(text, end)
    if m is None:
        return None
    word = m.group(1).lower()
    if word in _UNIT_WORDS or len(word) < 3 or word.startswith("year"):
        return None
    if stem(word) in {"and", "the", "for", "with", "from", "are", "was", "were", "is"}:
        return None
    return word


_OPPOSITE = {
    "more": {"fewer", "less"}, "fewer": {"more"}, "less": {"more"}, "older": {"younger"},
    "younger": {"older"}, "taller": {"shorter"}, "longer": {"shorter"},
    "shorter": {"taller", "longer"}, "bigger": {"smaller"}, "smaller": {"bigger"},
    "heavier": {"lighter"}, "lighter": {"heavier"}, "faster": {"slower"}, "slower": {"faster"},
    "wider": {"narrower"}, "narrower": {"wider"},
}  # fmt: skip
_COMPARISON = re.compile(r"\b(" + "|".join(_OPPOSITE) + r")\b(?:\s+\w+){0,3}?\s+than\s+", re.I)


_DETERMINERS = {"the", "a", "an", "his", "her", "their", "its", "my", "our", "your", "of"}


def _comparison(text: str, names: frozenset[str]) -> tuple[str, str, str] | None:
    """(who, comparative, than whom) of 'X ... more ... than Y': names when both sides have
    one, else the things compared ('9 fewer rose stamps than truck stamps')."""
    m = _COMPARISON.search(text)
    if m is None:
        return None
    before = [lower_name(w) for w in re.findall(r"[A-Za-z][A-Za-z']*", text[: m.start()])]
    after = [lower_name(w) for w in re.findall(r"[A-Za-z][A-Za-z']*", text[m.end() :])]
    who = next((w for w in before if w in names), None)
    than = next((w for w in after[:4] if w in names), None)
    if who is None or than is None:  # things: the word after the comparative and after 'than'
        thing = [w for w in re.findall(r"[A-Za-z]+", m.group(0).lower())[1:-1]]
        than_thing = next((w for w in after[:3] if w not in _DETERMINERS), None)
        if not thing or than_thing is None:
            return None
        return stem(thing[0]), m.group(1).lower(), stem(than_thing)
    return who, m.group(1).lower(), than


def _turned_around(
    text: str, q_clause: str, names: frozenset[str], question_words: set[str]
) -> str | None:
    """A comparison the claim states the other way round: the names swapped, or the
    comparative reversed (more <-> fewer, older <-> younger)."""
    mine, theirs = _comparison(text, names), _comparison(q_clause, names)
    if mine is None or theirs is None:
        return None
    if (mine[0], mine[2]) == (theirs[2], theirs[0]) and mine[1] == theirs[1]:
        return "swaps who is compared with whom"
    if (mine[0], mine[2]) == (theirs[0], theirs[2]) and mine[1] in _OPPOSITE[theirs[1]]:
        return f"says {mine[1]} where the question says {theirs[1]}"
    if (mine[0], mine[2]) != (theirs[0], theirs[2]) and mine[0] == theirs[2]:
        return "compares the person the question compares against"
    if mine[:2] == theirs[:2] and mine[2] != theirs[2] and mine[2] in question_words:
        return f"compares with {mine[2]}, where the question compares with {theirs[2]}"
    return None


_SKELETON_WORD = re.compile(r"[A-Za-z]+|\d[\d,.]*")


def _skeleton(text: str, number_text: str) -> list[str]:
    """The clause's words, its one number as '#', leading 'so'/'if'/... dropped."""
    words = [w.lower() for w in _SKELETON_WORD.findall(text)]
    words = ["#" if w.rstrip(".") == number_text else w for w in words]
    while words and words[0] in {"so", "if", "then", "and", "now", "first", "we", "know", "that"}:
        words.pop(0)
    return words


def _given_to_another(
    text: str, number: Number, bindings: list[Binding], names: frozenset[str]
) -> bool:
    """Is the number the question's, for another named subject ('If Tom has 30' when Ann has
    the 30)? Then the name is what was misread, not the number (number_bindings says so)."""
    own = [b for b in bindings if math.isclose(b.number.value, number.value) and b.subject]
    subject = subject_match(text, names)
    return subject is not None and any(b.subject != lower_name(subject.group(0)) for b in own)


def _copied_with_another_number(
    text: str, number: Number, bindings: list[Binding]
) -> Binding | None:
    """The question clause the claim copies word for word but for its number ('Marlon had 4
    lollipops in the beginning' for 'Marlon had 42 lollipops in the beginning')."""
    mine = _skeleton(text, number.text)
    if mine.count("#") != 1 or len(mine) < 4:
        return None
    for b in bindings:
        if b.number.word or math.isclose(b.number.value, number.value):
            continue
        if _skeleton(b.clause, b.number.text) == mine:
            return b
    return None


def _word_before(question: str, bound: Binding) -> str | None:
    """The word right before a relative clause ('Amy' in 'older than Amy, who is 15'): the one
    it is about."""
    at = question.find(bound.clause.strip())
    words = re.findall(r"[A-Za-z][A-Za-z']*", question[:at]) if at > 0 else []
    return lower_name(words[-1]) if words else None


def _start_of(text: str, position: int) -> int:
    return next((a for a, b in sentence_spans(text) if a <= position < b), 0)


def _sentence_of(text: str, position: int) -> str:
    for a, b in sentence_spans(text):
        if a <= position < b:
            return text[a:b]
    return text


def _asked_sentence(question: str) -> str:
    spans = sentence_spans(question)
    asked = [text for a, b in spans if "?" in (text := question[a:b])]
    return asked[-1] if asked else (question[spans[-1][0] : spans[-1][1]] if spans else "")


def _words(text: str) -> set[str]:
    return {lower_name(w) for w in re.findall(r"[A-Za-z][A-Za-z']*", text)}


_ADDITIVE = re.compile(
    r"\b(?P<up>more|older|longer|taller|heavier|extra)\b|\b(?P<down>fewer|less|younger|shorter)\b"
    r"(?=(?:\s+\w+){0,4}?\s+than\b)",
    re.IGNORECASE,
)
_MULTIPLICATIVE = re.compile(r"\btimes\s+(?:as|more|larger|bigger)\b", re.IGNORECASE)


def relation_op(number: Number, bindings: list[Binding]) -> tuple[str, str] | None:
    """The operation the question's wording gives `number` ('2 fewer ... than' -> '-', '3 times
    as many' -> '*'), with the clause; None when the number is not bound once or the clause
    states no such relation."""
    own = [b for b in bindings if math.isclose(b.number.value, number.value) and not b.number.word]
    if len(own) != 1:
        return None
    clause = own[0].clause
    after = clause[clause.find(own[0].number.text) + len(own[0].number.text) :]
    if _MULTIPLICATIVE.match(after.lstrip()) or re.match(r"\s*times\s+as\b", after):
        return "*", clause
    m = _ADDITIVE.search(after[:40])
    if m is not None and re.search(r"\bthan\b", after):
        return ("+" if m.group("up") else "-"), clause
    return None
