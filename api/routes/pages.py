"""The web pages: report list, report, feature, audit list and audit, and the page login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlmodel import select

from api.atlas_cache import atlas_of, concept_basis_of, transcoder_labels
from api.deps import SessionDep, SettingsDep
from api.pages.audit_view import accuracy_segments, fix_rate_bars, item_prompt
from api.pages.auth import KEY_COOKIE, PageCaller, safe_next, same_origin
from api.pages.filters import parse_list_query
from api.pages.heatmap import (
    branch_cells,
    context_cells,
    path_cells,
    prompt_length,
    report_scale,
)
from api.pages.report_view import (
    aligned_texts,
    attribution_strip,
    continuation_prefix,
    evidence_chart,
    next_token_rows,
)
from api.pages.templating import STATIC_DIR, render
from api.pages.trace_view import trace_page
from api.problem_details import Problem, not_found
from diagnostics.atlas.describe import element_rows
from diagnostics.failure_classes import FailureClass
from service.api_keys import verify_api_key
from service.audit_progress import audit_progress, find_audit, recent_audits
from service.audit_summary import audit_frames, export_frame, summarize
from service.models import Job
from service.report_queries import (
    SORT_KEYS,
    ReportFilters,
    feature_stats,
    list_reports,
    stored_report,
)
from service.trace_summary import recurring_supernodes, traced_failures
from service.validation import INT32_MAX, whole_number

router = APIRouter(include_in_schema=False)
AUDIT_ITEMS_SHOWN = 200


def _page_urls(request: Request, offset: int, limit: int, count: int) -> dict[str, str | None]:
    """Relative links to the previous and next page, keeping the other query parameters."""

    def at(start: int) -> str:
        url = request.url.include_query_params(offset=start)
        return f"{url.path}?{url.query}"

    return {
        "prev_url": at(max(0, offset - limit)) if offset > 0 else None,
        "next_url": at(offset + limit) if offset + limit < count else None,
    }


@dataclass(frozen=True)
class SortLink:
    url: str
    active: bool
    arrow: str  # ' ↓' / ' ↑' on the column the list is sorted by


def _sort_links(request: Request, current: str) -> dict[str, SortLink]:
    """Per sortable column: the list sorted by it (descending first, again: ascending), keeping
    the filters and going back to the first page."""
    links = {}
    for key in SORT_KEYS:
        active = current.lstrip("-") == key
        target = key if current == f"-{key}" else f"-{key}"
        url = request.url.remove_query_params("offset").include_query_params(sort=target)
        arrow = (" ↓" if current.startswith("-") else " ↑") if active else ""
        links[key] = SortLink(f"{url.path}?{url.query}", active, arrow)
    return links


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/reports", status_code=307)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The icon browsers ask for on every page, the API's JSON and /docs included (SVG)."""
    return FileResponse(
        STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )  # fmt: skip


@router.get("/reports")
def reports_page(request: Request, session: SessionDep, caller: PageCaller) -> Response:
    """Stored reports, newest first or sorted by a column, filtered like GET /v1/reports."""
    query = parse_list_query(request.query_params)
    rows, count = list_reports(
        session,
        query.filters,
        scope=caller.scope,
        limit=query.limit,
        offset=query.offset,
        sort=query.sort,
    )
    return render(
        request,
        "reports.html",
        {
            "rows": rows,
            "sort_links": _sort_links(request, query.sort),
            "count": count,
            "offset": query.offset,
            "form": query.form,
            "failure_classes": [c.value for c in FailureClass],
        }
        | _page_urls(request, query.offset, query.limit, count),
    )


@router.get("/reports/{report_id}")
def report_page(
    report_id: str, request: Request, session: SessionDep, settings: SettingsDep, caller: PageCaller
) -> Response:
    """One report around its verdict: the first wrong step in the model's text beside the
    corrected path, the next-token distribution where they part, the attribution strip, both
    paths as token heatmaps (hover or focus: a token's labelled latents), the flagged features
    and the ablation evidence against the null."""
    stored = stored_report(session, report_id, scope=caller.scope)
    if stored is None:
        raise not_found("report", report_id)
    report = stored.report
    label_of = _labeller(report, settings)
    feature = whole_number(request.query_params.get("feature", ""), 0, INT32_MAX)
    feature = feature if feature in report.flagged_ids else None
    scale = report_scale(report, feature)
    at = report.divergence.position if report.divergence else None
    model_cells = path_cells(
        report.model_path,
        scale=scale,
        feature=feature,
        divergence_at=at,
        prompt_len=prompt_length(report),
        wrong_span=report.first_error.output_span if report.first_error else None,
        label_of=label_of,
    )
    return render(
        request,
        "report.html",
        {
            "stored": stored,
            "report": report,
            "feature": feature,
            "scale": scale,
            "model_cells": model_cells,
            "branches": branch_cells(report, scale=scale, feature=feature, label_of=label_of),
            "aligned": aligned_texts(report),
            "next_tokens": next_token_rows(report),
            "strip": attribution_strip(report),
            "chart": evidence_chart(report) if report.verification else None,
            "prefix": continuation_prefix(report),
            "cards": _cards(report, settings),
            "trace_view": trace_page(report, transcoder_labels(settings, report.trace.transcoders))
            if report.trace
            else None,
        },
    )


def _cards(report, settings) -> dict:
    """Latent id -> FeatureCard of the flagged latents: the report's own, else the atlas's (a
    report stored before cards, when the atlas matches its SAE width)."""
    atlas = atlas_of(settings)
    usable = atlas is not None and atlas.d_sae == report.identity.sae_d_sae
    return {
        f.feature: f.card or (atlas.card(f.feature) if usable else None) for f in report.flagged
    }


@router.get("/reports/{report_id}/graph.json")
def report_graph_json(report_id: str, session: SessionDep, caller: PageCaller) -> Response:
    """The report's attribution graph as circuit-tracer's graph JSON (its viewer opens it)."""
    from diagnostics.trace.stored_json import graph_json_of

    stored = stored_report(session, report_id, scope=caller.scope)
    if stored is None or stored.report.trace is None:
        raise not_found("traced report", report_id)
    return JSONResponse(
        graph_json_of(stored.report, slug=report_id),
        headers={"Content-Disposition": f'attachment; filename="{report_id}-graph.json"'},
    )


def _labeller(report, settings):
    """Latent id -> label: the report's own labels for its flagged and top latents, the atlas
    for the rest (when there is one matching the report's SAE width)."""
    known = {f.feature: f.label for f in report.flagged if f.label}
    if report.attribution:
        for a in report.attribution.top_positive + report.attribution.top_negative:
            if a.label:
                known.setdefault(a.feature, a.label)
    atlas = atlas_of(settings)
    usable = atlas is not None and atlas.d_sae == report.identity.sae_d_sae

    def label_of(fid: int) -> str:
        if fid in known:
            return known[fid]
        return atlas.label(fid) if usable and fid < atlas.d_sae else ""

    return label_of


@router.get("/features/{feature_id}")
def feature_page(
    feature_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: PageCaller,
) -> Response:
    """A latent: its atlas entry (when there is an atlas) and the reports that flag it."""
    if not (feature_id.isascii() and feature_id.isdigit()):
        raise not_found("feature", feature_id)
    fid = whole_number(feature_id, 0, INT32_MAX)
    if fid is None:
        raise Problem(
            422, "Invalid request", f"feature ids are whole numbers from 0 to {INT32_MAX}",
            "validation",
        )  # fmt: skip
    atlas = atlas_of(settings)
    entry = None
    if atlas is not None:
        if fid >= atlas.d_sae:
            raise not_found("feature", fid)
        entry = atlas.entry(fid)
    query = parse_list_query(request.query_params)
    filters = ReportFilters(feature=fid)
    rows, count = list_reports(
        session, filters, scope=caller.scope, limit=query.limit, offset=query.offset
    )
    if entry is None and count == 0:
        raise not_found("feature", fid)
    n_reports, n_failures, fix_rate = feature_stats(session, fid, scope=caller.scope)
    contexts, rule_elements = [], []
    if entry is not None:
        contexts = [(c, context_cells(c, entry.max_activation)) for c in entry.top_contexts]
        rule_elements = element_rows(entry.rule)
    return render(
        request,
        "feature.html",
        {
            "fid": fid,
            "transcoder": None,  # an SAE latent (transcoder features: routes/transcoder_pages)
            "entry": entry,
            "atlas_dir": settings.atlas_dir,
            "contexts": contexts,
            "rule_elements": rule_elements,
            "clamp": atlas.meta.output_test.get("clamp", "") if atlas is not None else "",
            "rows": rows,
            "count": count,
            "offset": query.offset,
            "n_reports": n_reports,
            "n_failures": n_failures,
            "fix_rate": fix_rate,
            "steer_prompt": _steer_prompt(entry),
        }
        | _page_urls(request, query.offset, query.limit, count),
    )


def _steer_prompt(entry) -> str:
    """A prompt to try steering on: the strongest atlas context up to its peak token."""
    if entry is None or not entry.top_contexts:
        return ""
    ctx = entry.top_contexts[0]
    return "".join(ctx.tokens[: ctx.peak_index]).strip()


@router.get("/audits")
def audits_page(request: Request, session: SessionDep, caller: PageCaller) -> Response:
    """Audits, newest first, with their progress."""
    query = parse_list_query(request.query_params)
    audits, count = recent_audits(
        session, scope=caller.scope, limit=query.limit, offset=query.offset
    )
    return render(
        request,
        "audits.html",
        {"audits": audits, "count": count, "offset": query.offset}
        | _page_urls(request, query.offset, query.limit, count),
    )


@router.get("/audits/{audit_id}")
def audit_page(
    audit_id: str, request: Request, session: SessionDep, settings: SettingsDep, caller: PageCaller
) -> Response:
    """An audit, what it found first: progress and accuracy, first errors by kind, responsible
    spans by kind, the concepts that beat the selection-matched null (with their cards)."""
    audit = find_audit(session, audit_id, scope=caller.scope)
    if audit is None:
        raise not_found("audit", audit_id)
    items, features = audit_frames(session, audit_id)
    summary = summarize(items, features, concept_basis_of(settings))
    progress = audit_progress(session, audit)
    shown = export_frame(items, features).head(AUDIT_ITEMS_SHOWN).astype(object)
    shown = shown.where(shown.notna(), None)
    rows = shown.to_dict("records")
    pending = {r["job_id"] for r in rows if r["report_id"] is None}
    if pending:  # no report yet: the prompt from the job itself
        payloads = dict(session.exec(select(Job.id, Job.payload).where(Job.id.in_(pending))).all())  # type: ignore[union-attr]
        for r in rows:
            if r["job_id"] in payloads:
                r["prompt"] = item_prompt(payloads[r["job_id"]].get("prompt"))
    return render(
        request,
        "audit.html",
        {
            "progress": progress,
            "summary": summary,
            "items": rows,
            "n_items": len(items),
            "refresh": progress.status not in ("done", "cancelled"),
            "segments": accuracy_segments(summary, progress),
            "fix_bars": fix_rate_bars(summary),
            "eval_run": audit.options.get("kind") == "lm-eval",
            "trace_supernodes": _recurring_supernodes(session, audit_id, settings),
        },
    )


def _recurring_supernodes(session, audit_id: str, settings) -> list[dict]:
    """The audit's recurring supernodes, those traced without atlas labels named by the
    server's atlas of the same transcoder set when it has one."""
    failures = traced_failures(session, audit_id)
    scan = failures[0]["transcoders"] if failures else ""
    return recurring_supernodes(failures, labels=transcoder_labels(settings, scan or ""))


@router.get("/login")
def login_form(request: Request, next: str = "/reports") -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": ""})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/reports",
) -> Response:
    """Check the key; keep it in an HttpOnly cookie and go back to the page asked for."""
    if not same_origin(request):
        raise Problem(403, "Forbidden", "the login form was posted from another site")
    if verify_api_key(session, key.strip()) is None:
        context = {"next": safe_next(next), "error": "That API key is unknown or revoked."}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        KEY_COOKIE,
        key.strip(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    if not same_origin(request):
        raise Problem(403, "Forbidden", "the logout form was posted from another site")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/")
    return response
