"""The guard in front of the app (pure ASGI, so it acts before any body is read):

1. a NUL character in the path or query string -> 422 (databases cannot store it); so is a JSON
   or form body holding a NUL character or a lone surrogate anywhere, or JSON nested too deep;
2. /v1 requests: the API key is checked first (401 without reading the body; an address sending
   wrong keys is slowed with 429), then the key's request rate (429 + Retry-After); a page
   request trying a key (header, cookie, login form) that is refused counts as a wrong key too;
3. the body is limited while it streams, with or without Content-Length (chunked): a declared
   length over the limit is refused at once, an undeclared one as soon as the bytes exceed it
   (413, the app's own answer dropped).

The verified caller is left in `scope["state"]["caller"]` for the routes (api.auth).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread
from fastapi.responses import JSONResponse

from api.auth import Caller, caller_of
from api.pages.auth import KEY_COOKIE
from api.problem_details import DB_RETRY_AFTER_S, PROBLEM_JSON, TYPE_BASE
from api.rate_limit import RateLimiter
from service.api_keys import verify_api_key
from service.db import DB_ERRORS, session_scope
from service.settings import get_settings
from service.validation import MAX_JSON_DEPTH, json_problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY_SLACK = 64 * 1024  # multipart framing on top of the upload limit
PUBLIC_API = ("/v1/openapi.json",)


class BodyTooLarge(Exception):
    """The request body passed the limit while it was read."""


def problem(
    scope: Scope, status: int, title: str, detail: str, type_: str, **headers: str
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": scope.get("path", ""),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _verify(key: str) -> Caller | None:
    with session_scope() as session:
        row = verify_api_key(session, key)
        return None if row is None else caller_of(row)


class EdgeGuard:
    def __init__(self, app: Callable) -> None:
        self.app = app
        settings = get_settings()
        self.requests = RateLimiter(settings.rate_limit_per_minute)
        self.bad_keys = RateLimiter(settings.auth_failures_per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        early = await self._refusal(scope)
        if early is not None:
            await early(scope, receive, send)
            return
        if _page_with_key(scope):
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.bad_keys.blocked(client)
            if wait:
                await problem(
                    scope, 429, "Too many requests", "too many requests without a valid API key",
                    "rate-limited", **{"Retry-After": str(wait)},
                )(scope, receive, send)  # fmt: skip
                return
            send = self._counting_refusals(send, client)
        await self._limited(scope, receive, send)

    def _counting_refusals(self, send: Send, client: str) -> Send:
        """`send`, counting a 401 answer (a wrong key on a page or the login form) against the
        address, as a wrong key on /v1 is."""

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.bad_keys.hit(client)
            await send(message)

        return counted

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer given before the app runs, or None to let the request through."""
        path: str = scope["path"]
        raw = scope.get("raw_path") or b""
        query = scope.get("query_string") or b""
        if "\x00" in path or b"%00" in raw.lower() or b"%00" in query.lower() or b"\x00" in query:
            return problem(
                scope, 422, "Invalid request", "NUL characters are not allowed", "validation"
            )
        settings = get_settings()
        if not path.startswith("/v1/") or path in PUBLIC_API or not settings.auth_required:
            return None
        key = _header(scope, b"x-api-key")
        client = (scope.get("client") or ("unknown", 0))[0]
        if not key:
            return self._unauthorized(scope, client, "send an API key in the X-API-Key header")
        try:
            caller = await anyio.to_thread.run_sync(_verify, key)
        except DB_ERRORS:
            return problem(
                scope, 503, "Service unavailable", "the database is not answering",
                "unavailable", **{"Retry-After": str(DB_RETRY_AFTER_S)},
            )  # fmt: skip
        if caller is None:
            return self._unauthorized(scope, client, "the API key is unknown or revoked")
        wait = self.requests.hit(caller.prefix)
        if wait:
            return problem(
                scope, 429, "Too many requests",
                f"at most {self.requests.limit} requests a minute per API key", "rate-limited",
                **{"Retry-After": str(wait)},
            )  # fmt: skip
        scope.setdefault("state", {})["caller"] = caller
        return None

    def _unauthorized(self, scope: Scope, client: str, detail: str) -> JSONResponse:
        wait = self.bad_keys.hit(client)
        if wait:
            return problem(
                scope, 429, "Too many requests", "too many requests without a valid API key",
                "rate-limited", **{"Retry-After": str(wait)},
            )  # fmt: skip
        return problem(
            scope, 401, "Unauthorized", detail, "unauthorized", **{"WWW-Authenticate": "APIKey"}
        )

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the body counted as it streams (JSON and url-encoded form bodies are
        read whole first and checked: see _checked)."""
        limit = get_settings().max_upload_bytes + BODY_SLACK
        too_large = problem(
            scope, 413, "Too large", f"request bodies are limited to {limit} bytes", "too-large"
        )
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        seen = 0
        overflow = False
        started = False

        async def counted() -> Message:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if overflow:  # the app answered its own error to the cut body: answer 413 instead
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await too_large(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            checked = await _checked(scope, counted)
            if isinstance(checked, JSONResponse):
                await checked(scope, receive, send)
                return
            await self.app(scope, checked or counted, guarded)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


def _page_with_key(scope: Scope) -> bool:
    """A page request that tries a key: the X-API-Key header, the login cookie, or the login
    form (the /v1 routes are limited in _refusal)."""
    if scope["path"].startswith("/v1/"):
        return False
    if scope["path"] == "/login" and scope.get("method") == "POST":
        return True
    cookie = _header(scope, b"cookie") or ""
    return _header(scope, b"x-api-key") is not None or f"{KEY_COOKIE}=" in cookie


async def _checked(scope: Scope, receive: Receive) -> Receive | JSONResponse | None:
    """A JSON or url-encoded form body, read whole: a 422 when it holds text no database can
    store (a NUL character, a lone surrogate) or JSON nested past MAX_JSON_DEPTH; else a
    `receive` that replays it. None for other bodies (multipart uploads: their fields are typed
    and their files parsed row by row)."""
    kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    is_json = kind == "application/json" or kind.endswith("+json")
    is_form = kind == "application/x-www-form-urlencoded"
    if scope.get("method") not in ("POST", "PUT", "PATCH") or not (is_json or is_form):
        return None
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    check = _json_problem if is_json else _form_problem
    # a large body is parsed off the event loop, which other requests share
    detail = check(body) if len(body) < BODY_SLACK else await anyio.to_thread.run_sync(check, body)
    if detail is not None:
        return problem(scope, 422, "Invalid request", detail, "validation")
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_problem(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except RecursionError:
        return f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError:  # not JSON: the route's own validation answers
        return None
    problem = json_problem(value)
    return None if problem is None else f"body: {problem}"


def _form_problem(body: bytes) -> str | None:
    lowered = body.lower()
    if b"%00" in lowered or b"\x00" in body:
        return "form fields: NUL characters are not allowed"
    return None
