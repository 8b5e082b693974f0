"""The FastAPI app (`uvicorn --factory api.main:create_app`). OpenAPI at /v1/openapi.json."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.docs import install_docs
from api.edge import EdgeGuard
from api.pages.errors import install_page_handlers
from api.pages.templating import STATIC_DIR
from api.problem_details import install_problem_handlers
from api.routes import (
    audits,
    diagnoses,
    features,
    health,
    jobs,
    page_jobs,
    pages,
    reports,
    steer,
    transcoder_pages,
)

API_VERSION = "1.0.0"


JOB_PAGES = {"diagnoses": "/diagnoses", "audits": "/audits", "steer": "/steer"}


def html_page_for(request: Request) -> str | None:
    """The page of a /v1 job resource when the client prefers HTML to JSON, else None."""
    parts = request.url.path.strip("/").split("/")
    if request.method != "GET" or len(parts) != 3 or parts[0] != "v1":
        return None
    accept = request.headers.get("accept", "")
    if parts[1] not in JOB_PAGES or "text/html" not in accept or "json" in accept:
        return None
    return f"{JOB_PAGES[parts[1]]}/{parts[2]}"


def create_app() -> FastAPI:
    """Build the app; settings are read from the environment (see service.settings)."""
    app = FastAPI(
        title="driftscope",
        version=API_VERSION,
        description="Drift reports: why a language model gets a reasoning problem wrong.",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    install_problem_handlers(app)
    install_page_handlers(app)  # HTML errors for the web pages, problem+json for the API
    app.add_middleware(EdgeGuard)  # NUL in URLs, API key and rate before the body, body size

    @app.middleware("http")
    async def pages_for_browsers(request: Request, call_next) -> Response:
        """A browser following a 202 Location (GET /v1/diagnoses/<id>, /v1/audits/<id>,
        /v1/steer/<id>) asking for HTML is sent to that job's page."""
        page = html_page_for(request)
        if page is not None:
            return RedirectResponse(page, status_code=303)
        return await call_next(request)

    # page_jobs before pages: its /audits/new and /diagnoses/new precede the /{id} routes
    for module in (health, diagnoses, reports, features, steer, jobs, audits, page_jobs, pages,
                   transcoder_pages):  # fmt: skip
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
