"""Gold steps: what a correct solution computes, to check a model's steps against.

Sources, most trusted first:
- a reference solution's GSM8K calculator annotations `<<48/2=24>>` (or its written equations);
- an expression the question asks outright ("What is 57 + 68?", "(76 - 25)");
- derived: the arithmetic over the question's numbers (numerals, number words, 'half', 'twice',
  unit constants it implies) that reaches the expected answer, each number paying for its
  operation. A derivation is a hypothesis, not a reference: every equally good one is kept (at
  most MAX_DERIVATIONS), and `first_error` checks a step against those still consistent with
  the steps before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from diagnostics.answers import to_float
from diagnostics.solution_steps import (
    Expr,
    Number,
    Step,
    format_number,
    parse_solution,
    question_numbers,
)


@dataclass(frozen=True)
class GoldStep:
    """One operation of a correct solution: `left op right = value` (a tree for compound ones)."""

    expression: Expr
    value: float

    @property
    def operands(self) -> list[float]:
        return [n.value for n in self.expression.leaves()]

    def render(self) -> str:
        return f"{self.expression.render()} = {format_number(self.value)}"


@dataclass
class GoldSolution:
    """The gold steps of a problem, in solution order, and where they came from."""

    steps: list[GoldStep] = field(default_factory=list)
    source: str = "none"  # annotations | reference | question | derived | none
    alternatives: int = 1  # how many equally good derivations were merged (derived only)
    trees: list[Expr] = field(default_factory=list)  # whole derivations (derived only)

    @property
    def values(self) -> list[float]:
        return [s.value for s in self.steps]

    @property
    def expressions(self) -> list[GoldStep]:
        """Every sub-expression of the gold steps over the problem's own numbers (a compound
        step '14 + 4 - 8' and its part '14 + 4'), to match a model's compound step by its
        operands."""
        roots = self.trees or [s.expression for s in self.steps]
        out: list[GoldStep] = []
        for root in roots:
            for node in _subtrees(root):
                value = node.value
                if value is not None and not any(_same_step(GoldStep(node, value), g) for g in out):
                    out.append(GoldStep(node, value))
        return out

    def __bool__(self) -> bool:
        return bool(self.steps)


def gold_from_reference(reference: str) -> GoldSolution:
    """Gold steps of a worked reference: its calculator annotations, else its equations."""
    parsed = parse_solution(reference)
    annotated = [s for s in parsed.steps if s.annotation]
    steps, source = (annotated, "annotations") if annotated else (parsed.steps, "reference")
    return GoldSolution([_gold(s) for s in steps if _gold(s) is not None], source)  # type: ignore[misc]


def _gold(step: Step) -> GoldStep | None:
    value = step.expression.value
    return GoldStep(step.expression, value) if value is not None else None


_ASKED = re.compile(r"[\d(][\d\s.,+\-*/x×÷()$%]*[+\-*/x×÷][\d\s.,+\-*/x×÷()$%]*[\d)]")


def gold_from_question(question: str, expected: float) -> GoldSolution:
    """The expression a question asks outright whose value is the expected answer (its last
    one: worked examples before it have other values)."""
    for m in reversed(list(_ASKED.finditer(question))):
        solution = parse_solution(f"{m.group(0)} = {format_number(expected)}")
        for step in solution.steps:
            value = step.expression.value
            if value is not None and abs(value - expected) <= 1e-6 * max(1.0, abs(expected)):
                return GoldSolution([GoldStep(step.expression, value)], "question")
    return GoldSolution()


_QUESTION_MARK = re.compile(r"(?:^|\n)[ \t]*(?:Q|Question|Problem)[ \t]*[:.][ \t]*", re.IGNORECASE)
_ANSWER_MARK = re.compile(r"\n[ \t]*(?:A|Answer)[ \t]*[:.]", re.IGNORECASE)


def last_question(prompt: str) -> str:
    """The question a prompt asks last: the text after its last "Q:"/"Question:" marker (worked
    examples before it are not part of the problem), up to its "A:"/"Answer:"."""
    starts = [m.end() for m in _QUESTION_MARK.finditer(prompt)]
    text = prompt[starts[-1] :] if starts else prompt
    end = _ANSWER_MARK.search(text)
    return (text[: end.start()] if end else text).strip()


def gold_for(prompt: str, expected: str, reference: str | None) -> GoldSolution:
    """The gold steps: the reference's, else an expression the question asks, else derived."""
    if reference:
        gold = gold_from_reference(reference)
        if gold:
            return gold
    value = to_float(expected)
    if value is None:
        return GoldSolution()
    question = last_question(prompt)
    return gold_from_question(question, value) or derive_gold(question, value)


# -- derived gold: search for the arithmetic that reaches the expected answer -----------------

_UNIT_PAIRS = [
    ({"minute", "minutes"}, {"hour", "hours"}, 60),
    ({"hour", "hours"}, {"day", "days"}, 24),
    ({"day", "days", "daily"}, {"week", "weeks", "weekly"}, 7),
    ({"week", "weeks", "weekly"}, {"year", "years", "yearly"}, 52),
    ({"month", "months", "monthly"}, {"year", "years", "yearly"}, 12),
    ({"day", "days", "daily"}, {"year", "years", "yearly"}, 365),
    ({"cent", "cents"}, {"dollar", "dollars", "$"}, 100),
    ({"inch", "inches"}, {"foot", "feet"}, 12),
]
"""Conversion constants a question implies when it names both units."""

MAX_DERIVATIONS = 8
"""Derivations kept: every one as good as the best (each question number paying for its
operation), most question numbers first."""

MAX_ATOMS = 9
"""Numbers the search combines; beyond this the question's own numbers are kept first."""

_OPS = ("+", "-", "*", "/")


def search_atoms(question: str) -> tuple[list[float], int]:
    """The values a solution may use: the question's numbers (numerals, number words, 'half' as
    2, 'twice' as 2, a percentage as its fraction), then implied constants (100 for percents,
    unit conversions); and how many of them are the question's own numbers."""
    own: list[float] = []
    for n in question_numbers(question):
        if n.value not in own and n.value > 0:
            own.append(n.value)
    words = set(re.findall(r"[a-z$]+", question.lower()))
    constants: list[float] = []
    if "%" in question or "percent" in words:
        constants.append(100.0)
    for a, b, value in _UNIT_PAIRS:
        if words & a and words & b:
            constants.append(float(value))
    constants = [c for c in dict.fromkeys(constants) if c not in own]
    own = own[:MAX_ATOMS]
    return own + constants[: max(0, MAX_ATOMS - len(own))], len(own)


@dataclass
class _Level:
    """Expressions with the same number of leaves: values and how each was made."""

    value: np.ndarray  # [m] float64
    cover: np.ndarray  # [m] int64 bitmask of the question numbers used
    op: np.ndarray  # [m] int8 index into _OPS, -1 for an atom
    left: np.ndarray  # [m, 2] (level, index) of the left operand, -1 for an atom
    right: np.ndarray  # [m, 2] (level, index) of the right operand


def _nice(v: np.ndarray) -> np.ndarray:
    """Values a grade-school solution passes through: finite, positive, at most 2 decimals."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > 0) & (np.abs(v * 100 - np.round(v * 100)) < 1e-6) & (v < 1e9)


def derive_gold(question: str, expected: float, *, max_leaves: int = 6) -> GoldSolution:
    """The simplest arithmetic over the question's numbers that reaches `expected`.

    Expressions are built bottom-up by their number of leaves (a number may be used more than
    once: 48 + 48 / 2), keeping per value the one that uses the most distinct question numbers;
    the answer is matched goal-first (expected = x op y is looked up, not enumerated), so trees of
    up to `max_leaves` leaves cost about as much as those of four. Every hit as good as the best
    (`_score`'s first part) is kept, most question numbers first; their steps are the gold."""
    atoms, n_own = search_atoms(question)
    if not atoms or expected <= 0:
        return GoldSolution()
    found = _search(np.array(atoms, dtype=np.float64), n_own, float(expected), max_leaves)
    if not found:
        return GoldSolution()
    steps: list[GoldStep] = []
    for tree in found:
        for step in steps_of_tree(tree):
            if not any(_same_step(step, s) for s in steps):
                steps.append(step)
    return GoldSolution(steps, "derived", alternatives=len(found), trees=found)


def _same_step(a: GoldStep, b: GoldStep) -> bool:
    return sorted(a.operands) == sorted(b.operands) and abs(a.value - b.value) < 1e-9


def _subtrees(tree: Expr) -> list[Expr]:
    if tree.op is None:
        return []
    return [*_subtrees(tree.left), *_subtrees(tree.right), tree]  # type: ignore[arg-type]


def steps_of_tree(tree: Expr) -> list[GoldStep]:
    """Every operator node of a tree, innermost first, as a binary gold step."""
    if tree.op is None:
        return []
    inner = [*steps_of_tree(tree.left), *steps_of_tree(tree.right)]  # type: ignore[arg-type]
    left, right = _leafify(tree.left), _leafify(tree.right)  # type: ignore[arg-type]
    binary = Expr(tree.op, 0, 0, left=left, right=right)
    return [*inner, GoldStep(binary, tree.value)]  # type: ignore[arg-type]


def _leafify(e: Expr) -> Expr:
    """A subtree as the leaf of its value (how a step uses an earlier result)."""
    if e.op is None:
        return e
    v = e.value
    return Expr(None, 0, 0, number=Number(v, 0, 0, format_number(v)))  # type: ignore[arg-type]


def _search(atoms: np.ndarray, n_own: int, expected: float, max_leaves: int) -> list[Expr]:
    levels: dict[int, _Level] = {}
    k = len(atoms)
    own_bits = np.array([(1 << i) if i < n_own else 0 for i in range(k)], dtype=np.int64)
    levels[1] = _Level(
        atoms,
        own_bits,
        np.full(k, -1, dtype=np.int8),
        np.full((k, 2), -1, dtype=np.int64),
        np.full((k, 2), -1, dtype=np.int64),
    )
    # materialise levels up to 4 leaves as left-deep chains and pairs; match the rest goal-first
    for size in (2, 3, 4):
        parts = [(a, size - a) for a in range(1, size) if a >= size - a or size - a == 1]
        levels[size] = _dedupe(
            _concat([_pairs(levels, a, b) for a, b in parts if a in levels and b in levels])
        )
    hits: list[tuple[int, int, Expr]] = []  # (cover bits, -ops, tree)
    for size, lvl in levels.items():
        for i in np.nonzero(np.isclose(lvl.value, expected, rtol=1e-9, atol=1e-9))[0]:
            hits.append(_hit(levels, size, int(i)))
    for a_size in range(max(levels), 0, -1):
        for b_size in range(1, a_size + 1):
            if a_size + b_size > max_leaves or a_size + b_size <= max(levels):
                continue
            hits.extend(_goal_matches(levels, a_size, b_size, expected))
    if not hits:
        return []
    best = max(_score(c, ops)[0] for c, ops, _ in hits)
    good = sorted(
        (h for h in hits if _score(h[0], h[1])[0] == best),
        key=lambda h: (-_score(h[0], h[1])[1], h[1]),
    )
    trees: list[Expr] = []
    for _, _, tree in good:
        if not any(_render_key(tree) == _render_key(t) for t in trees):
            trees.append(tree)
    return trees[:MAX_DERIVATIONS]


def _score(cover: int, ops: int) -> tuple[int, int]:
    """How good a derivation is: each question number it uses should pay for its operation (a
    natural solution brings in each number with one operation; pulling in an unneeded number
    costs extra ones, as in x * (9 - 8)), then the more numbers the better."""
    used = bin(cover).count("1")
    return used - ops, used


def _render_key(tree: Expr) -> tuple:
    return tuple(sorted(s.render() for s in steps_of_tree(tree)))


def _pairs(levels: dict[int, _Level], a: int, b: int) -> _Level:
    la, lb = levels[a], levels[b]
    cols = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x, y = la.value[:, None], lb.value[None, :]
        for k, op in enumerate(_OPS):
            for swap in (False, True):
                if swap and (op in "+*") and a == b:
                    continue
                if swap and op in "+*":
                    continue  # a+b == b+a: one order is enough for commutative ops
                v = (
                    {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
                    if not swap
                    else {
                        "-": y - x,
                        "/": y / x,
                    }[op]
                )
                keep = _nice(v)
                if op in "*/":
                    keep &= ~np.isclose(y if not swap else x, 1.0)
                if op == "*":
                    keep &= ~np.isclose(x, 1.0)
                ii, jj = np.nonzero(keep)
                left = np.stack([np.full(len(ii), a), ii], 1)
                right = np.stack([np.full(len(jj), b), jj], 1)
                if swap:
                    left, right = right, left
                cols.append(
                    _Level(
                        v[ii, jj],
                        la.cover[ii] | lb.cover[jj],
                        np.full(len(ii), k, dtype=np.int8),
                        left,
                        right,
                    )
                )
    return _concat(cols)


def _concat(levels: list[_Level]) -> _Level:
    return _Level(
        np.concatenate([lv.value for lv in levels]),
        np.concatenate([lv.cover for lv in levels]),
        np.concatenate([lv.op for lv in levels]),
        np.concatenate([lv.left for lv in levels]),
        np.concatenate([lv.right for lv in levels]),
    )


def _dedupe(lvl: _Level) -> _Level:
    """One expression per value: the one using the most distinct question numbers."""
    popcount = _popcount(lvl.cover)
    key = np.round(lvl.value, 6)
    order = np.lexsort((-popcount, key))
    _, first = np.unique(key[order], return_index=True)
    keep = order[first]
    return _Level(lvl.value[keep], lvl.cover[keep], lvl.op[keep], lvl.left[keep], lvl.right[keep])


def _popcount(bits: np.ndarray) -> np.ndarray:
    """Set bits of each int64 [m]."""
    return np.unpackbits(bits.astype(np.int64).view(np.uint8)).reshape(-1, 64).sum(1)


def _goal_matches(levels: dict[int, _Level], a: int, b: int, expected: float) -> list:
    """Trees x op y = expected with x of `a` leaves and y of `b` leaves, found by looking up
    the x each y needs (expected - y, expected + y, ...) among the sorted x values."""
    la, lb = levels[a], levels[b]
    order = np.argsort(la.value)
    sorted_x = la.value[order]
    y = lb.value  # [n_b]
    with np.errstate(divide="ignore", invalid="ignore"):
        wants = {  # (op, x on the right of y): the x that makes `x op y` (or `y op x`) expected
            ("+", False): expected - y,
            ("-", False): expected + y,
            ("-", True): y - expected,
            ("*", False): expected / y,
            ("/", False): expected * y,
            ("/", True): y / expected,
        }
    out = []
    for (op, x_on_right), target in wants.items():
        pos = np.clip(np.searchsorted(sorted_x, target), 0, max(len(sorted_x) - 1, 0))
        if not len(sorted_x):
            break
        match = np.isclose(sorted_x[pos], target, rtol=1e-9, atol=1e-9) & _nice(target)
        for j in np.nonzero(match)[0].tolist():
            i = int(order[pos[j]])
            tree_x, tree_y = _tree(levels, a, i), _tree(levels, b, j)
            left, right = (tree_y, tree_x) if x_on_right else (tree_x, tree_y)
            if op in "*/" and abs(right.value - 1.0) < 1e-9:  # type: ignore[operator]
                continue
            tree = Expr(op, 0, 0, left=left, right=right)
            cover = int(la.cover[i] | lb.cover[j])
            out.append((cover, _n_ops(tree), tree))
    return out


def _hit(levels: dict[int, _Level], size: int, i: int) -> tuple[int, int, Expr]:
    tree = _tree(levels, size, i)
    return int(levels[size].cover[i]), _n_ops(tree), tree


def _n_ops(tree: Expr) -> int:
    return len(tree.ops())


def _tree(levels: dict[int, _Level], size: int, i: int) -> Expr:
    lvl = levels[size]
    if lvl.op[i] < 0:
        v = float(lvl.value[i])
        return Expr(None, 0, 0, number=Number(v, 0, 0, format_number(v)))
    left = _tree(levels, int(lvl.left[i, 0]), int(lvl.left[i, 1]))
    right = _tree(levels, int(lvl.right[i, 0]), int(lvl.right[i, 1]))
    return Expr(_OPS[int(lvl.op[i])], 0, 0, left=left, right=right)
