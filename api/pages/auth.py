"""Who may see the pages: the API's own keys, sent as the X-API-Key header or kept in a cookie.

With auth on (the default), a page without a valid key answers 401 with a login form; the form
checks the key and stores it in an HttpOnly, SameSite=Strict cookie. With DRIFTSCOPE_AUTH=0 the
pages are open, as the API is.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlmodel import Session

from api.auth import API_KEY_HEADER, OPEN_CALLER, Caller, caller_of
from api.deps import get_session
from api.problem_details import Problem
from service.api_keys import verify_api_key
from service.settings import get_settings

KEY_COOKIE = "driftscope_key"


def page_caller(request: Request, session: Annotated[Session, Depends(get_session)]) -> Caller:
    """Dependency: the caller (everyone's scope when auth is off); a 401 (login page) otherwise."""
    if not get_settings().auth_required:
        return OPEN_CALLER
    key = request.headers.get(API_KEY_HEADER.model.name) or request.cookies.get(KEY_COOKIE)
    row = verify_api_key(session, key) if key else None
    if row is None:
        detail = "the stored API key is unknown or revoked" if key else "an API key is needed"
        raise Problem(401, "Unauthorized", detail, "unauthorized")
    return caller_of(row)


PageCaller = Annotated[Caller, Depends(page_caller)]


def safe_next(target: str | None) -> str:
    """A same-site path to go to after logging in ('/reports' for anything else)."""
    if not target:
        return "/reports"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/reports"
    if "\\" in target or any(ch.isspace() or not ch.isprintable() for ch in target):
        return "/reports"  # browsers drop tabs and newlines and read '\\' as '/'
    return target


def same_origin(request: Request) -> bool:
    """False when the browser says the form was posted from another site (its Origin header)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not sent by this client: nothing to compare
    return urlsplit(origin).netloc == request.headers.get("host", request.url.netloc)
