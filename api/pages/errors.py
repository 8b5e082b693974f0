"""Errors on page requests as HTML pages (401 as the login form); API requests keep their
`application/problem+json` answers from api.problem_details."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from api.pages.templating import render
from api.problem_details import DB_RETRY_AFTER_S, Problem, status_phrase
from service.db import DB_ERRORS

PAGE_PREFIXES = ("/reports", "/features", "/audits", "/diagnoses", "/steer", "/login", "/logout")
API_PREFIXES = ("/v1", "/docs", "/redoc", "/healthz", "/readyz", "/static")


def is_page_request(request: Request) -> bool:
    """A page path, or any non-API path a browser asked for as HTML (an unknown URL)."""
    path = request.url.path
    if path.startswith(API_PREFIXES):
        return False
    if path == "/" or path.startswith(PAGE_PREFIXES):
        return True
    return "text/html" in request.headers.get("accept", "")


def _describe(exc: Exception) -> tuple[int, str, str]:
    """(status, title, detail) of an exception, as the problem handlers would give them."""
    if isinstance(exc, Problem):
        return exc.status, exc.title, exc.detail
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, status_phrase(exc.status_code), str(exc.detail or "")
    if isinstance(exc, RequestValidationError):
        first = next(iter(exc.errors()), {})
        where = ".".join(str(p) for p in first.get("loc", ()))
        return 422, "Invalid request", f"{where}: {first.get('msg', '')}".strip(": ")
    if isinstance(exc, DB_ERRORS):
        return 503, "Service unavailable", "the database is not answering; retry shortly"
    return 500, "Internal server error", ""


def error_page(request: Request, exc: Exception) -> Response:
    """The HTML answer to `exc` (the login form for a 401)."""
    status, title, detail = _describe(exc)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return render(request, "login.html", {"next": target, "error": ""}, status_code=401)
    page = render(
        request, "error.html", {"status": status, "title": title, "detail": detail}, status
    )
    if status == 503:
        page.headers["Retry-After"] = str(DB_RETRY_AFTER_S)
    return page


def install_page_handlers(app: FastAPI) -> None:
    """Wrap the problem handlers: HTML for page requests, the problem document otherwise."""
    for exc_type in (
        Problem,
        StarletteHTTPException,
        RequestValidationError,
        *DB_ERRORS,
        Exception,
    ):
        previous = app.exception_handlers[exc_type]

        async def handler(request: Request, exc: Exception, previous=previous) -> Response:
            if is_page_request(request):
                return error_page(request, exc)
            return await previous(request, exc)

        app.add_exception_handler(exc_type, handler)
