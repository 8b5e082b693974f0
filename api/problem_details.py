"""Errors as RFC 9457 problem details (`application/problem+json`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import DB_ERRORS

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://driftscope.dev/problems/"
DB_RETRY_AFTER_S = 5  # Retry-After of a 503 while the database is down


class Problem(Exception):
    """Raise to answer with a problem document; `extra` members are added to it."""

    def __init__(
        self, status: int, title: str, detail: str = "", type_: str = "", **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.type = TYPE_BASE + type_ if type_ else "about:blank"
        self.extra = extra
        self.headers: dict[str, str] = {}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str = "",
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "instance": request.url.path}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str
    title: str
    status: int
    instance: str
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="Validation errors (422).")


PROBLEM_DESCRIPTIONS = {
    400: "Bad request (an Idempotency-Key the service cannot use).",
    401: "No API key, or an unknown or revoked one.",
    404: "No such resource among the caller's.",
    409: "A request with this Idempotency-Key is still being answered.",
    413: "The body or a text is over the limit.",
    422: "The request does not fit the schema or the service's bounds.",
    429: "Too many requests, or the key's quota of queued jobs is used (see Retry-After).",
    503: "The database is not answering (see Retry-After).",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring problem+json answers for `statuses`."""
    schema = ProblemDocument.model_json_schema()
    return {
        status: {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        | ({"headers": RETRY_AFTER} if status in (429, 503) else {})
        for status in statuses
    }


READ_PROBLEMS = problems(401, 422, 429, 503)  # every authenticated GET
ITEM_PROBLEMS = problems(401, 404, 422, 429, 503)  # a GET of one resource by id
WRITE_PROBLEMS = problems(400, 401, 409, 413, 422, 429, 503)  # a POST that queues work


def not_found(what: str, ident: object) -> Problem:
    return Problem(404, "Not found", f"no {what} with id {ident}", "not-found")


def install_problem_handlers(app: FastAPI) -> None:
    """Turn Problem, HTTPException, validation errors and crashes into problem documents."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request, exc.status, exc.title, exc.detail, exc.type, exc.headers, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            request,
            exc.status_code,
            status_phrase(exc.status_code),
            str(exc.detail or ""),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem_response(
            request,
            422,
            "Invalid request",
            "the request does not match the schema",
            TYPE_BASE + "validation",
            errors=errors,
        )

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            request, 503, "Service unavailable", "the database is not answering; retry shortly",
            TYPE_BASE + "unavailable", headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )  # fmt: skip

    for db_error in DB_ERRORS:
        app.add_exception_handler(db_error, _database_down)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(request, 500, "Internal server error", type(exc).__name__)


def status_phrase(status: int) -> str:
    """The reason phrase of an HTTP status ('Not Found'), 'Error' for an unknown code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def check_text_length(limit: int, **texts: str | None) -> None:
    """413 problem for the first text longer than `limit` characters (None counts as empty)."""
    for name, text in texts.items():
        if len(text or "") > limit:
            raise Problem(
                413, "Too large", f"{name} is longer than {limit} characters", "too-large"
            )
