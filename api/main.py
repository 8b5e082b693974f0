"""The FastAPI app (`uvicorn --factory api.main:create_app`). OpenAPI at /v1/openapi.json."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.docs import install_docs
from api.edge import EdgeGuard
from api.pages.errors import install_page_handlers
from api.pages.templating import STATIC_DIR
from api.problem_details import install_problem_handlers
from api.routes import audits, diagnoses, features, health, pages, reports, steer

API_VERSION = "1.0.0"


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

    for module in (health, diagnoses, reports, features, steer, audits, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
