"""Derived gold: a brute-force search for the simplest arithmetic over a question's numbers
(numerals, number words, 'half', 'twice', unit constants it implies) that reaches the expected
answer, each number paying for its operation. `gold_solution.derive_gold` makes its trees gold."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from diagnostics.equation_parser import question_numbers
from diagnostics.equations import Expr, Number, format_number, operations

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


def search_derivations(question: str, expected: float, max_leaves: int) -> list[Expr]:
    """Every derivation as good as the best (`_score`'s first part), most question numbers first.

    Expressions are built bottom-up by their number of leaves (a number may be used more than
    once: 48 + 48 / 2), keeping per value the one that uses the most distinct question numbers;
    the answer is matched goal-first (expected = x op y is looked up, not enumerated), so trees of
    up to `max_leaves` leaves cost about as much as those of four."""
    atoms, n_own = search_atoms(question)
    if not atoms or expected <= 0:
        return []
    return _search(np.array(atoms, dtype=np.float64), n_own, float(expected), max_leaves)


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
    return tuple(sorted(f"{e.render()} = {format_number(v)}" for e, v in operations(tree)))


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
