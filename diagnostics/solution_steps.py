"""The steps of a worked solution: its equations and the quantities it states, with spans.

`parse_solution(text)` reads the notations models and GSM8K write: `48 / 2 = 24`, `48/2=24`,
`2 x 4`, `×`, `÷`, `$1,200`, `20%`, units and words between numbers (`49 (regular soda) + 40
(diet soda) = 89`, `$10/family * 3 families = $30`, `5 hours * $10 per hour`), chains
(`20 - 4 * 2 = 20 - 8 = 12`), parentheses, and worded operations ("half of 48 is 24", "48 divided
by 2 is 24", "twice 48", "3 times 5 equals 15", "20% of 400"). Every number keeps the character
span of its digits, so a checker can say where a step is wrong and a correction can rewrite
exactly those characters. GSM8K calculator annotations `<<48/2=24>>` are parsed as steps too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "thousand": 1000, "dozen": 12,
}  # fmt: skip
"""Number words a question states quantities with ("three families", "a dozen eggs")."""

_FRACTION_WORDS = {"half": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "tenth": 10}
"""'half of X' = X / 2, 'a third of X' = X / 3, ..."""

_MULTIPLE_WORDS = {"twice": 2, "double": 2, "triple": 3, "thrice": 3}
"""'twice X' = 2 * X."""

_TOKEN = re.compile(
    r"(?P<num>(?P<cur>\$\s?)?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?P<pct>\s?%)?)"
    r"|(?P<op>[+\-−–*×÷/·])"
    r"|(?P<eq>=)"
    r"|(?P<lp>[(\[])|(?P<rp>[)\]])"
    r"|(?P<nl>\n)"
    r"|(?P<punct>[.,;:!?])"
    r"|(?P<word>[A-Za-z]+(?:'[a-z]+)?)"
)
_OP_SYMBOLS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "·": "*", "÷": "/"}
_OP_SYMBOLS["/"] = "/"
_WORD_OPS = {"plus": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/"}
_EQ_WORDS = {"is", "are", "equals", "was", "were", "makes", "gives", "be"}
_STOP_WORDS = {
    "and", "or", "so", "then", "which", "that", "to", "for", "from", "with", "if", "the", "this",
    "we", "he", "she", "they", "it", "there", "now", "but", "because", "since", "than", "as",
    "by", "of", "in", "on", "at", "each", "every", "per", "left", "more", "less", "total",
    "is", "are", "was", "were", "be", "equals", "makes", "gives", "would", "will", "can",
    "plus", "minus", "times", "multiplied", "divided", "answer",
}  # fmt: skip
"""Words that end a run of unit words after a number ('48 clips' is a unit, '48 and' is not)."""


@dataclass(frozen=True)
class Token:
    kind: str  # num | op | eq | lp | rp | nl | punct | word
    text: str
    start: int
    end: int
    value: float | None = None  # num: the number; op: None
    op: str | None = None  # op: the canonical operator + - * /


@dataclass(frozen=True)
class Number:
    """A number as written: its value and the span of its digits (no '$', no '%')."""

    value: float
    start: int
    end: int
    text: str  # the digits as written, e.g. "1,200" or "0.5"
    percent: bool = False  # written with '%': value is already divided by 100
    word: bool = False  # written as a word ("three", "half")

    @property
    def written(self) -> float:
        """The number as it reads, before a '%' divides it by 100."""
        return self.value * 100 if self.percent else self.value


@dataclass(frozen=True)
class Expr:
    """An arithmetic expression tree over written numbers."""

    op: str | None  # + - * /, or None for a leaf
    start: int
    end: int
    number: Number | None = None  # the leaf's number
    left: Expr | None = None
    right: Expr | None = None
    op_span: tuple[int, int] | None = None  # characters of the operator (symbol or word)

    @property
    def value(self) -> float | None:
        if self.op is None:
            return self.number.value if self.number is not None else None
        a, b = self.left.value, self.right.value  # type: ignore[union-attr]
        if a is None or b is None:
            return None
        return apply_op(self.op, a, b)

    def leaves(self) -> list[Number]:
        if self.op is None:
            return [self.number] if self.number is not None else []
        return [*self.left.leaves(), *self.right.leaves()]  # type: ignore[union-attr]

    def ops(self) -> list[Expr]:
        """The operator nodes, left to right."""
        if self.op is None:
            return []
        return [*self.left.ops(), self, *self.right.ops()]  # type: ignore[union-attr]

    def render(self) -> str:
        """The expression in plain notation: '48 / 2', '(76 - 25) * 2'."""
        if self.op is None:
            return format_number(self.number.value if self.number else float("nan"))
        left, right = self.left.render(), self.right.render()  # type: ignore[union-attr]
        if self.left.op is not None and _PRECEDENCE[self.left.op] < _PRECEDENCE[self.op]:
            left = f"({left})"
        if self.right.op is not None and _PRECEDENCE[self.right.op] <= _PRECEDENCE[self.op]:
            right = f"({right})"
        return f"{left} {self.op} {right}"


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@dataclass(frozen=True)
class Step:
    """A written equation: two or more expressions joined by '=' (or 'is' after an operation)."""

    sides: tuple[Expr, ...]
    start: int
    end: int
    text: str
    annotation: bool = False  # a GSM8K calculator annotation <<...>>

    @property
    def expression(self) -> Expr:
        """The first side: what the step computes."""
        return self.sides[0]

    @property
    def result(self) -> Expr:
        """The last side: what the step says it comes to."""
        return self.sides[-1]

    @property
    def operands(self) -> list[Number]:
        return self.expression.leaves()

    def render(self) -> str:
        return " = ".join(s.render() for s in self.sides)


@dataclass(frozen=True)
class Quantity:
    """A number stated outside any equation ('She sold 24 clips in May.')."""

    number: Number
    sentence: tuple[int, int]  # the span of the sentence it is stated in


@dataclass
class Solution:
    """A text's steps and stated quantities, each in text order."""

    text: str
    steps: list[Step] = field(default_factory=list)
    quantities: list[Quantity] = field(default_factory=list)
    numbers: list[Number] = field(default_factory=list)  # every number, in order

    def events(self) -> list[Step | Quantity]:
        """Steps and quantities merged in text order."""
        items: list[Step | Quantity] = [*self.steps, *self.quantities]
        return sorted(items, key=lambda e: e.start if isinstance(e, Step) else e.number.start)


def apply_op(op: str, a: float, b: float) -> float | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b if b != 0 else None
    raise ValueError(f"unknown operator {op!r}")


def format_number(value: float) -> str:
    """24.0 -> '24', 1.5 -> '1.5', 3.3333 -> '3.33'."""
    if not math.isfinite(value):
        return "?"
    rounded = round(value, 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def same_value(written: float, true: float, text: str | None = None) -> bool:
    """Does the written result stand for the true value? Exact, or rounded to the decimals it
    was written with when it has some ('3.33' for 10/3); an integer for a fraction is wrong."""
    if math.isclose(written, true, rel_tol=1e-9, abs_tol=1e-9):
        return True
    decimals = len(text.split(".")[1]) if text and "." in text else 0
    return decimals > 0 and abs(written - true) <= 0.5 * 10**-decimals + 1e-9


def tokenize(text: str) -> list[Token]:
    tokens = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup if m.lastgroup not in ("cur", "digits", "pct") else "num"
        if m.group("num"):
            digits = m.group("digits")
            value = float(digits.replace(",", ""))
            pct = bool(m.group("pct"))
            tokens.append(
                Token("num", m.group(0), m.start(), m.end(), value / 100 if pct else value)
            )
            continue
        if kind == "op":
            tokens.append(Token("op", m.group(0), m.start(), m.end(), op=_OP_SYMBOLS[m.group(0)]))
            continue
        if kind == "word" and m.group(0) in ("x", "X"):
            tokens.append(Token("op", m.group(0), m.start(), m.end(), op="*"))
            continue
        tokens.append(Token(kind, m.group(0), m.start(), m.end()))  # type: ignore[arg-type]
    return [_x_as_word(t, tokens, i) for i, t in enumerate(tokens)]


def _x_as_word(tok: Token, tokens: list[Token], i: int) -> Token:
    """'x' multiplies only between two numbers ('2 x 4'); elsewhere it is a word."""
    if tok.kind != "op" or tok.text not in ("x", "X"):
        return tok
    prev_ok = i > 0 and tokens[i - 1].kind in ("num", "rp")
    next_ok = i + 1 < len(tokens) and tokens[i + 1].kind in ("num", "lp")
    return tok if prev_ok and next_ok else Token("word", tok.text, tok.start, tok.end)


def _number(tok: Token, text: str) -> Number:
    m = _TOKEN.match(text, tok.start)
    assert m is not None and m.group("digits")
    return Number(
        value=tok.value,  # type: ignore[arg-type]
        start=m.start("digits"),
        end=m.end("digits"),
        text=m.group("digits"),
        percent=bool(m.group("pct")),
    )


class _Stream:
    """The tokens of one run, with unit words and worded operators normalised away."""

    def __init__(self, items: list[tuple[str, object, Token]]) -> None:
        self.items = items  # (kind, payload, token): num/Number, op/str, lp, rp, eq, of
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, object, Token] | None:
        j = self.i + k
        return self.items[j] if j < len(self.items) else None


def _normalise(tokens: list[Token], text: str) -> list[list[tuple[str, object, Token]]]:
    """Split the token list into runs of expression material (numbers, operators, parentheses,
    '='); unit words after numbers, parenthesised word groups and '/unit' are dropped; worded
    operators and fractions become operators; everything else ends a run."""
    runs: list[list[tuple[str, object, Token]]] = []
    run: list[tuple[str, object, Token]] = []

    def close() -> None:
        nonlocal run
        if run:
            runs.append(run)
        run = []

    i, n = 0, len(tokens)
    while i < n:
        t = tokens[i]
        low = t.text.lower()
        nxt = tokens[i + 1] if i + 1 < n else None
        prev_kind = run[-1][0] if run else None
        if t.kind == "num":
            run.append(("num", _number(t, text), t))
            i += 1
            # unit words after a number ('ounces', 'ounces of milk'): up to four, 'of' only
            # between two of them, then an operator, '=' or ')' must follow
            j = i
            while j < n and j - i < 4 and tokens[j].kind == "word":
                word = tokens[j].text.lower()
                inner_of = word == "of" and j > i and j + 1 < n and tokens[j + 1].kind == "word"
                if (word in _STOP_WORDS and not inner_of) or tokens[j].text in ("x", "X"):
                    break
                j += 1
            if j > i and j < n and _continues(tokens, j):
                i = j
            # '/unit' or 'per unit' after a number: a rate, not a division
            if (
                i + 1 < n
                and (tokens[i].text == "/" or tokens[i].text.lower() == "per")
                and tokens[i + 1].kind == "word"
                and tokens[i + 1].text.lower() not in _STOP_WORDS
            ):
                i += 2
            continue
        if t.kind == "op":
            run.append(("op", t.op, t))
            i += 1
            continue
        if t.kind == "eq":
            run.append(("eq", "=", t))
            i += 1
            continue
        if t.kind == "lp":
            # a parenthesised group of words is a comment: '49 (regular soda) + 40'
            j = i + 1
            while j < n and tokens[j].kind in ("word", "punct") and tokens[j].text not in ".":
                j += 1
            if j > i + 1 and j < n and tokens[j].kind == "rp":
                i = j + 1
                continue
            run.append(("lp", "(", t))
            i += 1
            continue
        if t.kind == "rp":
            run.append(("rp", ")", t))
            i += 1
            continue
        if t.kind == "word":
            if low in _WORD_OPS and nxt is not None:
                skip = 1
                if low in ("multiplied", "divided") and nxt.text.lower() == "by":
                    skip = 2
                after = tokens[i + skip] if i + skip < n else None
                if prev_kind in ("num", "rp") and after is not None and after.kind in ("num", "lp"):
                    run.append(("op", _WORD_OPS[low], t))
                    i += skip
                    continue
            if low in _EQ_WORDS and prev_kind in ("num", "rp") and _has_op(run):
                j = i + 1
                if j < n and tokens[j].text.lower() in ("be", "equal", "to"):
                    j += 1
                if j < n and tokens[j].kind == "num":
                    run.append(("eq", "=", t))
                    i = j
                    continue
            if low == "of" and prev_kind == "num" and run[-1][1].percent:  # type: ignore[union-attr]
                run.append(("op", "*", t))  # '20% of 400'
                i += 1
                continue
            frac = _FRACTION_WORDS.get(low.rstrip("s"))
            if frac and nxt is not None and nxt.text.lower() == "of" and i + 2 < n:
                if tokens[i + 2].kind == "num":
                    close()
                    word = Number(1 / frac, t.start, t.end, t.text, word=True)
                    run.extend([("num", word, t), ("op", "*", nxt)])
                    i += 2
                    continue
            mult = _MULTIPLE_WORDS.get(low)
            if mult and nxt is not None and nxt.kind == "num":
                close()
                run.extend([("num", Number(mult, t.start, t.end, t.text, word=True), t)])
                run.append(("op", "*", t))
                i += 1
                continue
        close()
        i += 1
    close()
    return runs


def _continues(tokens: list[Token], j: int) -> bool:
    t = tokens[j]
    if t.kind in ("op", "eq", "rp"):
        return True
    if t.text == "/" or t.text.lower() == "per":
        return True
    if t.kind == "word" and t.text.lower() in _WORD_OPS:
        return True
    return t.kind == "word" and t.text.lower() in _EQ_WORDS


def _has_op(run: list[tuple[str, object, Token]]) -> bool:
    """Has the run an operator since its last '='?"""
    for kind, _, _ in reversed(run):
        if kind == "eq":
            return False
        if kind == "op":
            return True
    return False


def _parse_expr(s: _Stream) -> Expr | None:
    left = _parse_term(s)
    while left is not None and (p := s.peek()) is not None and p[0] == "op" and p[1] in "+-":
        s.i += 1
        right = _parse_term(s)
        if right is None:
            s.i -= 1
            break
        left = Expr(str(p[1]), left.start, right.end, left=left, right=right, op_span=_span(p))
    return left


def _parse_term(s: _Stream) -> Expr | None:
    left = _parse_factor(s)
    while left is not None and (p := s.peek()) is not None and p[0] == "op" and p[1] in "*/":
        s.i += 1
        right = _parse_factor(s)
        if right is None:
            s.i -= 1
            break
        left = Expr(str(p[1]), left.start, right.end, left=left, right=right, op_span=_span(p))
    return left


def _parse_factor(s: _Stream) -> Expr | None:
    p = s.peek()
    if p is None:
        return None
    if p[0] == "num":
        s.i += 1
        number: Number = p[1]  # type: ignore[assignment]
        return Expr(None, number.start, number.end, number=number)
    if p[0] == "op" and p[1] == "-":  # unary minus: '-5'
        q = s.peek(1)
        if q is not None and q[0] == "num":
            s.i += 2
            num: Number = q[1]  # type: ignore[assignment]
            neg = Number(-num.value, num.start, num.end, num.text, num.percent)
            return Expr(None, p[2].start, num.end, number=neg)
        return None
    if p[0] == "lp":
        start = s.i
        s.i += 1
        inner = _parse_expr(s)
        q = s.peek()
        if inner is None or q is None or q[0] != "rp":
            s.i = start
            return None
        s.i += 1
        return Expr(
            inner.op,
            p[2].start,
            q[2].end,
            number=inner.number,
            left=inner.left,
            right=inner.right,
            op_span=inner.op_span,
        )
    return None


def _span(item: tuple[str, object, Token]) -> tuple[int, int]:
    return item[2].start, item[2].end


def _steps_in_run(run: list[tuple[str, object, Token]], text: str) -> list[Step]:
    """The equations in one run: maximal chains `e1 = e2 = ...` of expressions that parse."""
    eqs = [k for k, item in enumerate(run) if item[0] == "eq"]
    if not eqs:
        return []
    # the sides between '=' signs; the first may start late, the last may end early
    bounds = [-1, *eqs, len(run)]
    pieces = [run[bounds[k] + 1 : bounds[k + 1]] for k in range(len(bounds) - 1)]
    sides: list[Expr | None] = []
    for k, piece in enumerate(pieces):
        if k == 0:
            sides.append(_parse_suffix(piece))
        else:
            sides.append(_parse_prefix(piece, whole=k < len(pieces) - 1))
    steps: list[Step] = []
    chain: list[Expr] = []

    def flush() -> None:
        if len(chain) >= 2 and any(e.op is not None for e in chain):
            start, end = chain[0].start, chain[-1].end
            steps.append(Step(tuple(chain), start, end, text[start:end]))
        chain.clear()

    for side in sides:
        if side is None:
            flush()
            continue
        chain.append(side)
    flush()
    return steps


def _parse_suffix(piece: list) -> Expr | None:
    """The expression that ends exactly at the end of `piece` and starts earliest."""
    for start in range(len(piece)):
        if piece[start][0] not in ("num", "lp", "op"):
            continue
        s = _Stream(piece[start:])
        e = _parse_expr(s)
        if e is not None and s.i == len(s.items):
            return e
    return None


def _parse_prefix(piece: list, whole: bool) -> Expr | None:
    """The longest expression at the start of `piece` (all of it when `whole`)."""
    s = _Stream(piece)
    e = _parse_expr(s)
    if e is None or (whole and s.i != len(piece)):
        return None
    return e


_NUM_TEXT = r"\$?\d[\d,]*(?:\.\d+)?%?"
_GERUND = re.compile(
    rf"\b(?P<verb>multiplying|dividing|adding|subtracting)\s+"
    rf"(?P<a_words>(?:[A-Za-z$'-]+\s+){{0,4}}?)(?P<a>{_NUM_TEXT})(?:[- ][A-Za-z-]+){{0,3}}?"
    rf"\s+(?P<prep>by|and|to|from)\s+(?P<b>{_NUM_TEXT}(?:\s*/\s*\d+)?)"
    rf"(?:\s*,?\s*(?:which|this|that|we)?\s*(?:gives|get|equals|is|results in|yields)(?:\s+us)?"
    rf"\s*|\s*=\s*)?(?P<r>{_NUM_TEXT})?",
    re.IGNORECASE,
)
"""Operations written with a gerund: 'dividing 4000 by 3/4', 'multiplying the 8-pound weight by
2, which gives us 4', 'subtracting 3 from 10' (10 - 3)."""
_GERUND_OPS = {"multiplying": "*", "dividing": "/", "adding": "+", "subtracting": "-"}

_ANNOTATION = re.compile(r"<<([^<>]*)>>")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def parse_solution(text: str) -> Solution:
    """Every equation (and calculator annotation) and every stated quantity in `text`."""
    steps: list[Step] = []
    masked = text
    for m in _ANNOTATION.finditer(text):
        inner_start = m.start(1)
        inner = _parse_at(text, inner_start, m.end(1))
        steps.extend(
            Step(s.sides, s.start, s.end, s.text, annotation=True) for s in inner
        )  # fmt: skip
        masked = masked[: m.start()] + " " * (m.end() - m.start()) + masked[m.end() :]
    tokens = tokenize(masked)
    for run in _normalise(tokens, masked):
        steps.extend(_steps_in_run(run, text))
    for step in _gerund_steps(masked):
        if not any(s.start < step.end and step.start < s.end for s in steps):
            steps.append(step)
    steps.sort(key=lambda s: s.start)
    numbers = [_number(t, masked) for t in tokens if t.kind == "num"]
    in_steps = {
        (n.start, n.end) for s in steps if not s.annotation for e in s.sides for n in e.leaves()
    }
    sentences = sentence_spans(text)
    quantities = [
        Quantity(n, next((s for s in sentences if s[0] <= n.start < s[1]), (n.start, n.end)))
        for n in numbers
        if (n.start, n.end) not in in_steps
    ]
    return Solution(text=text, steps=steps, quantities=quantities, numbers=numbers)


def _gerund_steps(text: str) -> list[Step]:
    """Steps written as 'dividing A by B (, which gives R)'; without a result, a step of one side."""
    out = []
    for m in _GERUND.finditer(text):
        verb = m.group("verb").lower()
        prep = m.group("prep").lower()
        if (verb, prep) not in {("multiplying", "by"), ("dividing", "by"), ("adding", "and"),
                                ("adding", "to"), ("subtracting", "from")}:  # fmt: skip
            continue
        a, b = _leaf_expr(text, m, "a"), _leaf_expr(text, m, "b")
        if a is None or b is None:
            continue
        left, right = (b, a) if verb == "subtracting" else (a, b)  # 'subtracting 3 from 10'
        expr = Expr(_GERUND_OPS[verb], m.start("verb"), b.end, left=left, right=right,
                    op_span=m.span("verb"))  # fmt: skip
        sides: tuple[Expr, ...] = (expr,)
        if m.group("r"):
            r = _leaf_expr(text, m, "r")
            if r is not None:
                sides = (expr, r)
        end = sides[-1].end
        out.append(Step(sides, m.start("verb"), end, text[m.start("verb") : end]))
    return out


def _leaf_expr(text: str, m: re.Match, group: str) -> Expr | None:
    """A number group of a match as an expression (a fraction 'a/b' as a division)."""
    start, end = m.span(group)
    piece = " " * start + text[start:end]  # the group alone, at its place in the text
    runs = _normalise(tokenize(piece), piece)
    return _parse_prefix(runs[0], whole=True) if runs else None


def _parse_at(text: str, start: int, end: int) -> list[Step]:
    """Steps of text[start:end] with spans in `text`'s coordinates."""
    padded = " " * start + text[start:end]
    return [
        s
        for run in _normalise(tokenize(padded), padded)
        for s in _steps_in_run(run, padded)
    ]  # fmt: skip


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of `text` (split after . ! ? before whitespace, and at
    newlines)."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def question_numbers(question: str) -> list[Number]:
    """The quantities a question states: its numerals and number words ('three', 'a dozen',
    'half'), the words with their spans."""
    out = [_number(t, question) for t in tokenize(question) if t.kind == "num"]
    for m in re.finditer(r"[A-Za-z]+", question):
        low = m.group(0).lower()
        if low in _NUMBER_WORDS:
            out.append(Number(_NUMBER_WORDS[low], m.start(), m.end(), m.group(0), word=True))
        elif low in _MULTIPLE_WORDS:
            out.append(Number(_MULTIPLE_WORDS[low], m.start(), m.end(), m.group(0), word=True))
        elif low.rstrip("s") in _FRACTION_WORDS:
            frac = _FRACTION_WORDS[low.rstrip("s")]
            out.append(Number(frac, m.start(), m.end(), m.group(0), word=True))
    return sorted(out, key=lambda n: n.start)
