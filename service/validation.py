"""Input types checked at the edge (request bodies, job payloads, uploaded rows): no NUL
characters and no lone surrogates (PostgreSQL text cannot hold either, and UTF-8 cannot encode a
surrogate), no blank prompts, no JSON nested past MAX_JSON_DEPTH, integers that fit the
database's columns."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

INT32_MAX = 2**31 - 1  # an INTEGER column (feature ids)
INT64_MAX = 2**63 - 1  # a BIGINT, or a JSON number PostgreSQL keeps exactly
MAX_JSON_DEPTH = 32  # deepest nesting of a request body or an uploaded row (rows are ~5 deep)
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (a NUL character, a lone surrogate), or None."""
    if "\x00" in text:
        return "NUL characters are not allowed"
    if _SURROGATE.search(text):
        return "lone surrogate characters (\\ud800-\\udfff) are not allowed"
    return None


def storable(text: str) -> str:
    """`text` when it can be stored (see text_problem); ValueError otherwise."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


def json_problem(value: object, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a parsed JSON value cannot be accepted (a string or key that cannot be stored, nesting
    deeper than `max_depth`), naming where; None when it can. Iterative: any depth is safe."""
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{where or 'value'}: {problem}"
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = text_problem(str(key))
                if problem is not None:
                    return f"{where + '.' if where else ''}{key!a} (a key): {problem}"
                stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def whole_number(raw: str, low: int, high: int) -> int | None:
    """`raw` as a whole number in [low, high], or None when it is not one (not ASCII digits,
    out of range, or too long to parse: Python refuses int() past 4300 digits)."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(high)):
        return None
    value = int(raw)
    return value if low <= value <= high else None


Text = Annotated[str, AfterValidator(storable)]
NonBlankText = Annotated[str, AfterValidator(storable), AfterValidator(not_blank)]
FeatureId = Annotated[int, Field(ge=0, le=INT32_MAX)]
