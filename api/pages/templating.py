"""The Jinja2 environment of the pages (autoescaped: prompts and labels are untrusted) and the
response headers every page carries (a strict CSP: no script runs, nothing loads from elsewhere)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from api.pages.auth import KEY_COOKIE
from api.pages.heatmap import display_text
from diagnostics.named_latents import activation_note
from service.settings import get_settings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def fmt_ts(value: datetime | None) -> str:
    """A timestamp as 'YYYY-MM-DD HH:MM UTC' (naive values are UTC)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    """A float with `digits` significant digits ('—' for None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage ('—' for None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.{digits}f}%"


def max_abs(values: Iterable[float | None]) -> float:
    """The largest magnitude among `values` (None skipped), 0.0 when there is none."""
    return max((abs(v) for v in values if v is not None), default=0.0)


def basename(source: str | None) -> str:
    """A source's file name: older audits stored the server's path to it, which pages hide."""
    return PurePath(source).name if source else ""


def audit_name(audit: Any) -> str:
    """What a person calls an audit: its name, else its source file and when it was made."""
    if getattr(audit, "name", ""):
        return audit.name
    return f"{basename(audit.source) or 'audit'} · {fmt_ts(audit.created_at)}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ts=fmt_ts, num=fmt_num, pct=fmt_pct, tok=display_text, basename=basename)
    env.globals.update(max_abs=max_abs, audit_name=audit_name, activation_note=activation_note)
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render template `name` as an HTML response with the security headers."""
    context = {
        "auth_on": get_settings().auth_required,
        "logged_in": bool(request.cookies.get(KEY_COOKIE)),
    } | context
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS | (headers or {})
    )
