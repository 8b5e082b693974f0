"""Reading arithmetic from text: tokens, numbers as written (numerals and number words), and the
equations in a run of expression material (`48 / 2 = 24`, '48 divided by 2 is 24', 'half of 48',
'20% of 400'; unit words between numbers dropped). `solution_steps` applies it to a whole text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnostics.equations import Expr, Number, Step

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


def written_number(tok: Token, text: str) -> Number:
    """A number token as a Number: its value and the span of its digits."""
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


def expression_runs(tokens: list[Token], text: str) -> list[list[tuple[str, object, Token]]]:
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
            run.append(("num", written_number(t, text), t))
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


def _parse_binary(s: _Stream, ops: str, operand) -> Expr | None:
    """Left-associative `operand (op operand)*` for the operators in `ops`."""
    left = operand(s)
    while left is not None and (p := s.peek()) is not None and p[0] == "op" and p[1] in ops:
        s.i += 1
        right = operand(s)
        if right is None:
            s.i -= 1
            break
        left = Expr(str(p[1]), left.start, right.end, left=left, right=right, op_span=_span(p))
    return left


def _parse_expr(s: _Stream) -> Expr | None:
    return _parse_binary(s, "+-", _parse_term)


def _parse_term(s: _Stream) -> Expr | None:
    return _parse_binary(s, "*/", _parse_factor)


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


def steps_in_run(run: list[tuple[str, object, Token]], text: str) -> list[Step]:
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
            sides.append(parse_prefix(piece, whole=k < len(pieces) - 1))
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


def parse_prefix(piece: list, whole: bool) -> Expr | None:
    """The longest expression at the start of `piece` (all of it when `whole`)."""
    s = _Stream(piece)
    e = _parse_expr(s)
    if e is None or (whole and s.i != len(piece)):
        return None
    return e


def question_numbers(question: str) -> list[Number]:
    """The quantities a question states: its numerals and number words ('three', 'a dozen',
    'half'), the words with their spans."""
    out = [written_number(t, question) for t in tokenize(question) if t.kind == "num"]
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
