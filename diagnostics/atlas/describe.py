"""Short descriptions of latents, built offline from the label rule, its counts and the contexts.

A label rule lists up to 10 tokens and bigrams a latent fires on, each with its firing count and
occurrences in the explain split. The description names the same thing in a few words:

1. Every element is classified by the token the latent fires on (the second of a bigram), after
   completing a word piece from the latent's max-activating contexts ("snowfl" -> "snowflakes"):
   a number ("3", " three", " third" are the number three), a symbol, whitespace, a question
   word, a weekday, a month, or a word.
2. Surface variants are grouped: the same number, symbol or weekday; words that differ by case,
   leading space, plural, tense or a shared stem ("compete" / "competition").
3. Groups are taken by firing count while they stay precise: a group is kept when its precision
   (fires / occurrences) is at least `PRECISION_RATIO` of the biggest group's and it holds at least
   `SHARE` of its firings; at most `MAX_GROUPS`. Groups past the cut are not shown.
4. The text names each group: `number three ("3", "three", "third")`, `question phrase "How
   many"`, `equals sign "="`, `"that" after "multiply", "divide"`.

The description's own matcher is the rule restricted to the elements of the shown groups, so it is
scored by the same detection AUROC as the rule (nothing is shown that is not scored).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from diagnostics.atlas.records import LabelRule
from diagnostics.atlas.surface import (
    Surface,
    number_name,
    same_word,
    show_token,
    surface,
    symbol_name,
)

PRECISION_RATIO = 0.5
SHARE = 0.1
MAX_GROUPS = 3
MAX_FORMS = 3  # variants listed per group
QUALIFY_SHARE = 0.6  # a group is "after X" when this share of its firings follows X


@dataclass
class Element:
    """One token or bigram of a rule, classified by the token the latent fires on."""

    index: int  # position in the rule's elements (tokens, then n-grams)
    ids: tuple[int, ...]
    fires: int
    occurrences: int
    surface: Surface  # of the firing token (completed to a word when it is a word piece)
    before: Surface | None  # the previous token of a bigram
    text: str  # as shown: "3", "How many"
    piece: bool = False  # a word piece that no context completed ("ies"): named only if alone


@dataclass
class Group:
    """Surface variants of one thing the latent fires on."""

    kind: str
    key: str
    elements: list[Element] = field(default_factory=list)

    @property
    def fires(self) -> int:
        return sum(e.fires for e in self.elements)

    @property
    def precision(self) -> float:
        return self.fires / max(sum(e.occurrences for e in self.elements), 1)

    @property
    def pieces(self) -> bool:
        return all(e.piece for e in self.elements)


@dataclass
class Description:
    """A latent's short description and the part of its rule the description stands for."""

    text: str
    elements: list[int]  # indices into the rule's elements (tokens, then n-grams)
    precision: float  # of the described elements, explain split
    coverage: float  # share of the latent's firings on a described element


def rule_elements(rule: LabelRule) -> list[tuple[int, ...]]:
    """The rule's elements in their stored order: tokens, then n-grams."""
    return [(t,) for t in rule.token_ids] + [tuple(g) for g in rule.ngram_ids]


def sub_rule(rule: LabelRule, keep: Sequence[int]) -> LabelRule:
    """The rule restricted to elements `keep` (indices into `rule_elements`)."""
    n_tok = len(rule.token_ids)
    toks = [k for k in keep if k < n_tok]
    grams = [k - n_tok for k in keep if k >= n_tok]
    fires = [rule.fires[k] for k in keep] if rule.fires else []
    occ = [rule.occurrences[k] for k in keep] if rule.occurrences else []
    hit, seen = sum(fires), sum(occ)
    total = sum(rule.fires) / rule.coverage if rule.fires and rule.coverage else 0
    return LabelRule(
        token_ids=[rule.token_ids[k] for k in toks],
        tokens=[rule.tokens[k] for k in toks],
        ngram_ids=[rule.ngram_ids[k] for k in grams],
        ngrams=[rule.ngrams[k] for k in grams],
        fires=fires,
        occurrences=occ,
        coverage=round(hit / total, 4) if total else 0.0,
        precision=round(hit / seen, 4) if seen else 0.0,
        log_odds=[rule.log_odds[k] for k in keep] if rule.log_odds else [],
    )


def complete_word(
    ids: tuple[int, ...], contexts: Sequence[Sequence[int]], strings: list[str]
) -> str:
    """The word a (possibly partial) token belongs to in most context occurrences, or ''.

    Word pieces are joined while a piece has no leading space and its neighbour ends (left) or
    starts (right) with a letter: "ipzig" after "Le" is "Leipzig".
    """
    target = ids[-1]
    words: Counter[str] = Counter()
    for row in contexts:
        for p, t in enumerate(row):
            if t != target or (len(ids) == 2 and (p == 0 or row[p - 1] != ids[0])):
                continue
            lo, hi = p, p
            while lo > 0 and _joins(strings[row[lo - 1]], strings[row[lo]]):
                lo -= 1
            while hi + 1 < len(row) and _joins(strings[row[hi]], strings[row[hi + 1]]):
                hi += 1
            words["".join(strings[row[k]] for k in range(lo, hi + 1)).strip()] += 1
    if not words:
        return ""
    word, n = words.most_common(1)[0]
    return word if 2 * n >= sum(words.values()) else ""


def _joins(left: str, right: str) -> bool:
    return bool(left) and bool(right) and left[-1].isalpha() and right[0].isalpha()


def marks_word_starts(strings: list[str]) -> bool:
    """Whether decoded tokens carry their leading space (BPE), so word pieces can be joined."""
    return sum(s.startswith(" ") for s in strings) >= 0.1 * len(strings)


def classify(
    rule: LabelRule, strings: list[str], contexts: Sequence[Sequence[int]] = ()
) -> list[Element]:
    """The rule's elements with their counts and surface classes (contexts: token-id rows in
    which to complete word pieces; pass none for a tokenizer that does not mark word starts)."""
    out = []
    fires = rule.fires or [0] * len(rule_elements(rule))
    occ = rule.occurrences or [1] * len(fires)
    for k, ids in enumerate(rule_elements(rule)):
        token = strings[ids[-1]]
        word = complete_word(ids, contexts, strings) if contexts else ""
        if not word and len(ids) == 2 and _joins(strings[ids[0]], token):
            word = (strings[ids[0]] + token).strip()  # a bigram inside one word: "mult|iply"
        completed = bool(word) and word.lower() != token.strip().lower()
        fired = surface(word) if completed else surface(token)
        before = surface(strings[ids[0]]) if len(ids) == 2 else None
        text = show_token("".join(strings[t] for t in ids)) if len(ids) == 2 else fired.text
        piece = bool(contexts) and not completed and token[:1].isalpha() and token[:1].islower()
        out.append(Element(k, ids, int(fires[k]), int(occ[k]), fired, before, text, piece))
    return out


def group_elements(elements: list[Element]) -> list[Group]:
    """Group surface variants; biggest group (by firings) first."""
    groups: list[Group] = []
    for e in elements:
        kind, key = e.surface.kind, e.surface.key
        if e.before is not None and e.before.kind == "question":
            kind, key = "question", "question"
        elif kind == "question":
            key = "question"
        for g in groups:
            if g.kind == kind and (g.key == key or (kind == "word" and same_word(g.key, key))):
                g.elements.append(e)
                break
        else:
            groups.append(Group(kind, key, [e]))
    return sorted(groups, key=lambda g: -g.fires)


def select_groups(groups: list[Group]) -> list[Group]:
    """The biggest group and those that stay as precise and hold a real share of firings
    (word pieces no context completed come last: they are named only when nothing else is)."""
    if not groups:
        return []
    groups = [g for g in groups if not g.pieces] or groups
    head = groups[0]
    kept = [head]
    for g in groups[1:]:
        if len(kept) == MAX_GROUPS:
            break
        if g.precision >= PRECISION_RATIO * head.precision and g.fires >= SHARE * head.fires:
            kept.append(g)
    return kept


def _forms(g: Group, *, firing_only: bool) -> list[str]:
    """Distinct shown forms of a group's elements, most firings first."""
    seen: dict[str, str] = {}
    for e in sorted(g.elements, key=lambda e: -e.fires):
        form = e.surface.text if firing_only or e.before is None else e.text
        seen.setdefault(form.lower(), form)
    return list(seen.values())


def _qualifier(g: Group) -> str:
    """' after "X"' when most of the group's firings follow the same kind of token."""
    after: Counter[str] = Counter()
    for e in g.elements:
        if e.before is not None:
            after[e.before.text] += e.fires
    bigram_fires = sum(after.values())
    if g.kind == "question" or bigram_fires < QUALIFY_SHARE * max(g.fires, 1):
        return ""
    tops = [t for t, _ in after.most_common(MAX_FORMS)]
    return " after " + ", ".join(f'"{t}"' for t in tops)


def _question_form(e: Element) -> str:
    """'How many' for a question word followed by the firing token, else the question word."""
    if e.before is not None and e.before.kind == "question":
        return e.text
    return e.surface.text


def _quoted(forms: list[str]) -> str:
    return ", ".join(f'"{f}"' for f in forms[:MAX_FORMS])


def name_group(g: Group) -> str:
    """A few words for one group of surface variants."""
    qualifier = _qualifier(g)
    forms = _forms(g, firing_only=bool(qualifier))
    if g.kind == "number":
        return f"number {number_name(g.key)} ({_quoted(forms)}){qualifier}"
    if g.kind in ("symbol", "space"):
        return f'{symbol_name(g.key)} "{forms[0]}"{qualifier}'
    if g.kind == "question":
        ranked = sorted(g.elements, key=lambda e: -e.fires)
        forms = list(dict.fromkeys(_question_form(e) for e in ranked))
        head = forms[0]
        what = "question phrase" if " " in head else "question word"
        rest = f" ({_quoted(forms[1:])})" if len(forms) > 1 else ""
        return f'{what} "{head}"{rest}'
    if g.kind in ("weekday", "month"):
        plural = "s" if len(forms) > 1 else ""
        return f"{g.kind}{plural} ({_quoted(forms)}){qualifier}"
    rest = f" ({_quoted(forms[1:])})" if len(forms) > 1 else ""
    return f'"{forms[0]}"{rest}{qualifier}'


def name_groups(groups: list[Group]) -> str:
    """The description text; several number groups read as one list of numbers or digits."""
    numbers = [g for g in groups if g.kind == "number"]
    parts: list[str] = []
    for g in groups:
        if g.kind == "number" and len(numbers) > 1:
            if g is numbers[0]:
                forms = [f for n in numbers for f in _forms(n, firing_only=True)[:1]]
                what = "digits" if all(f.isdigit() and len(f) == 1 for f in forms) else "numbers"
                merged = Group("number", "", [e for n in numbers for e in n.elements])
                parts.append(f"{what} ({_quoted(forms)}){_qualifier(merged)}")
            continue
        parts.append(name_group(g))
    return ", ".join(parts)


def describe(
    rule: LabelRule, strings: list[str], contexts: Sequence[Sequence[int]] = ()
) -> Description:
    """The short description of a latent with label rule `rule` ('' for an empty rule).

    strings: decoded vocabulary; contexts: token-id rows of its max-activating contexts (used to
    complete word pieces; leave empty when `marks_word_starts(strings)` is false).
    """
    if rule.empty:
        return Description("", [], 0.0, 0.0)
    groups = select_groups(group_elements(classify(rule, strings, contexts)))
    keep = sorted(e.index for g in groups for e in g.elements)
    part = sub_rule(rule, keep)
    return Description(name_groups(groups), keep, part.precision, part.coverage)


def readable_label(description: str, outputs: Sequence[str], *, n_out: int = 3) -> str:
    """What a person reads: the description, then the causal output tokens when there are any."""
    outs = " ".join(f'"{show_token(t)}"' for t in list(outputs)[:n_out])
    if not outs:
        return description
    return f"{description or '(no input pattern)'} → {outs}"


def peak_agreement(rule: LabelRule, contexts: Sequence[Sequence[int]], peak: int) -> float | None:
    """Share of contexts (token-id rows, peak at index `peak`) whose peak is a rule element.

    Low agreement means the strongest firings contradict the label: the rule names where the
    latent fires reliably, the contexts where it fires hardest.
    """
    if rule.empty or len(contexts) == 0:
        return None
    tokens, grams = set(rule.token_ids), {tuple(g) for g in rule.ngram_ids}
    hits = [
        int(row[peak]) in tokens or (peak > 0 and (int(row[peak - 1]), int(row[peak])) in grams)
        for row in contexts
        if len(row) > peak
    ]
    return sum(hits) / len(hits) if hits else None


@dataclass
class ElementRow:
    """One element of a rule as the feature page lists it."""

    text: str
    fires: int
    precision: float | None
    described: bool  # named by the short description


def element_rows(rule: LabelRule) -> list[ElementRow]:
    """The rule's elements, most firings first, for the full-rule view."""
    texts = [show_token(t) for t in rule.tokens] + [show_token(g) for g in rule.ngrams]
    fires = rule.fires or [0] * len(texts)
    occ = rule.occurrences or [0] * len(texts)
    rows = [
        ElementRow(text, int(f), round(f / o, 4) if o else None, k in rule.described)
        for k, (text, f, o) in enumerate(zip(texts, fires, occ, strict=True))
    ]
    return sorted(rows, key=lambda r: -r.fires)
