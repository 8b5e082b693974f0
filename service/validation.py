"""Input types checked at the edge (request bodies, job payloads): no NUL characters (PostgreSQL
text cannot hold them), no blank prompts, integers that fit the database's columns."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

INT32_MAX = 2**31 - 1  # an INTEGER column (feature ids)
INT64_MAX = 2**63 - 1  # a BIGINT, or a JSON number PostgreSQL keeps exactly


def no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    return text


def not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


Text = Annotated[str, AfterValidator(no_nul)]
NonBlankText = Annotated[str, AfterValidator(no_nul), AfterValidator(not_blank)]
FeatureId = Annotated[int, Field(ge=0, le=INT32_MAX)]
