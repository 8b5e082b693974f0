"""What each number of a question belongs to, to catch a solution restating it for the wrong
thing ("If Sally has 21 books" when Janey has the 21; "60% of the riders stay upright" when 25%
do and 60% of those are women).

A question number is bound to its clause (the sentence split at commas, semicolons, 'and',
'but', 'while'): the names and content words around it. A clause of the model's output that
states the number is checked against that binding, lexically:
- a subject swap: the model's clause opens with a name of the question (its subject) and the
  number's own clause opens with another ("Paisley ran 5 times ..." for "Reggie ran 5 times
  what Paisley ran"; "If Sally has 21 books" for "If Janey has 21 books");
- an attribute swap: the model's clause shares clearly more content words with the clause of
  another question number than with the number's own (by BINDING_MARGIN), and that other
  number is what it should have said.
This is a lexical check, not parsing: it misses bindings phrased with other words, and says
nothing when the clauses are ambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnostics.equation_parser import question_numbers
from diagnostics.equations import Number
from diagnostics.solution_steps import sentence_spans

BINDING_MARGIN = 2
"""Content words by which another number's clause must beat the number's own (and be at
least BINDING_MARGIN + 1 in all) for an attribute swap."""

_CLAUSE_SPLIT = re.compile(r",\s+|;\s+|:\s+|\s+(?:and|but|while|whereas|so)\s+", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_STOP = set(
    "a an the of to in on at for from with by as is are was were be been being has have had do "
    "does did will would can could should may might must it its it's this that these those there "
    "their they them he him his she her hers we us our you your i me my if then than so and or "
    "but not no each every per all any some more less much many how what which who whom whose "
    "when where why one two three four five six seven eight nine ten number total amount also "
    "only just about after before into out up down over under again still now same other".split()
)
_STARTERS = {"if", "the", "how", "what", "when", "after", "each", "every", "there", "in", "on",
             "a", "an", "at", "she", "he", "they", "it", "his", "her", "their", "of", "for",
             "so", "then", "this", "that", "to", "we", "let's", "first", "next", "now"}  # fmt: skip


@dataclass(frozen=True)
class Binding:
    """A question number and the clause it is stated in."""

    number: Number
    clause: str
    words: frozenset[str]  # content words (stemmed, lowercase)
    subject: str | None  # the name the clause opens with (lowercase), if any


@dataclass(frozen=True)
class Misbinding:
    """A model clause that states a question number for the wrong thing."""

    number: Number  # the number as the model wrote it
    clause: tuple[int, int]  # [start, end) of the model's clause
    kind: str  # name | attribute
    wrong: tuple[int, int] | None  # characters to rewrite (the wrong name), None: the number
    replacement: str  # the right name, or the right number
    evidence: str


def question_bindings(question: str) -> tuple[list[Binding], frozenset[str]]:
    """The bindings of the question's numbers, and the question's names."""
    names = _names(question)
    bindings = []
    clauses = _clauses(question)
    for n in question_numbers(question):
        a, b = next(((a, b) for a, b in clauses if a <= n.start < b), (n.start, n.end))
        text = question[a:b]
        bindings.append(Binding(n, text, content_words(text), _subject(text, names)))
    return bindings, names


def check_clause(
    output: str,
    clause: tuple[int, int],
    number: Number,
    bindings: list[Binding],
    names: frozenset[str],
) -> Misbinding | None:
    """Does the model's clause output[clause] state `number` for something the question binds
    it to differently? None when it agrees or the evidence is not clear."""
    own = [b for b in bindings if abs(b.number.value - number.value) < 1e-9 and not b.number.word]
    if len(own) != 1:  # not a question number, or stated more than once: no single binding
        return None
    bound = own[0]
    text = output[clause[0] : clause[1]]
    subject = subject_match(text, names)
    if subject is not None and bound.subject and lower_name(subject.group(0)) != bound.subject:
        right = _cased(bound.subject, bound.clause)
        return Misbinding(
            number=number,
            clause=clause,
            kind="name",
            wrong=(clause[0] + subject.start(), clause[0] + subject.end()),
            replacement=right,
            evidence=f"the question gives {bound.number.text} to {right} "
            f"('{bound.clause.strip()}'), not to {subject.group(0)}",
        )
    words = content_words(text) - {
        lower_name(m.group(0)) for m in _WORD.finditer(text) if lower_name(m.group(0)) in names
    }
    mine = len(words & bound.words)
    best, best_overlap = None, mine
    for b in bindings:
        if b is bound or b.number.word or abs(b.number.value - number.value) < 1e-9:
            continue
        overlap = len(words & b.words)
        if overlap > best_overlap:
            best, best_overlap = b, overlap
    if best is not None and best_overlap >= mine + BINDING_MARGIN and best_overlap > BINDING_MARGIN:
        return Misbinding(
            number=number,
            clause=clause,
            kind="attribute",
            wrong=None,
            replacement=best.number.text,
            evidence=f"the question says '{best.clause.strip()}' ({best.number.text}); "
            f"{bound.number.text} is '{bound.clause.strip()}'",
        )
    return None


def clause_around(text: str, position: int) -> tuple[int, int]:
    """The clause of `text` (as the question's are split) containing `position`."""
    return next(((a, b) for a, b in _clauses(text) if a <= position < b), (position, position))


def _clauses(text: str) -> list[tuple[int, int]]:
    out = []
    for a, b in sentence_spans(text):
        start = a
        for m in _CLAUSE_SPLIT.finditer(text, a, b):
            if m.start() > start:
                out.append((start, m.start()))
            start = m.end()
        if b > start:
            out.append((start, b))
    return out


_LEADS = {"if", "so", "then", "and", "but", "now", "since", "because", "when", "after", "while",
          "first", "next", "also", "thus", "therefore", "hence"}  # fmt: skip
"""Words a clause may open with before its subject."""

_NOT_NAMES = set(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)


def subject_match(text: str, names: frozenset[str]) -> re.Match | None:
    """The name a clause opens with (after leading words such as 'If', 'So'), or None."""
    for m in _WORD.finditer(text):
        low = lower_name(m.group(0))
        if low in _LEADS:
            continue
        return m if low in names else None
    return None


def _subject(text: str, names: frozenset[str]) -> str | None:
    m = subject_match(text, names)
    return lower_name(m.group(0)) if m else None


def _names(question: str) -> frozenset[str]:
    """The question's names: capitalised words that are neither sentence starters nor stop words
    and never written in lower case in it ('Roses' once capitalised is still roses)."""
    lower = {
        m.group(0).removesuffix("'s") for m in _WORD.finditer(question) if m.group(0).islower()
    }
    out = set()
    for m in _WORD.finditer(question):
        w = m.group(0).removesuffix("'s")
        low = w.lower()
        if (
            w[0].isupper()
            and len(w) > 1
            and low not in _STOP | _STARTERS | _NOT_NAMES
            and low not in lower
        ):
            out.add(low)
    return frozenset(out)


def lower_name(word: str) -> str:
    return word.lower().removesuffix("'s")


def _words_in_order(text: str) -> list[str]:
    return [lower_name(m.group(0)) for m in _WORD.finditer(text)]


def _words_lower(text: str) -> set[str]:
    return set(_words_in_order(text))


def content_words(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _words_lower(text) if w not in _STOP and len(w) > 2)


def stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _cased(name: str, text: str) -> str:
    """`name` as the text writes it."""
    m = re.search(rf"\b{re.escape(name)}\b", text, re.IGNORECASE)
    return m.group(0) if m else name.capitalize()
