"""The FastAPI app (`uvicorn --factory api.main:create_app`). OpenAPI at /v1/openapi.json."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from api.pages.errors import install_page_handlers
from api.pages.templating import STATIC_DIR
from api.problem_details import install_problem_handlers, problem_response
from api.routes import audits, diagnoses, features, health, pages, reports, steer
from service.settings import get_settings

API_VERSION = "1.0.0"
BODY_SLACK = 64 * 1024  # multipart framing on top of the upload limit


def create_app() -> FastAPI:
    """Build the app; settings are read from the environment (see service.settings)."""
    app = FastAPI(
        title="driftscope",
        version=API_VERSION,
        description="Drift reports: why a language model gets a reasoning problem wrong.",
        openapi_url="/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install_problem_handlers(app)
    install_page_handlers(app)  # HTML errors for the web pages, problem+json for the API

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next) -> Response:
        """Refuse a body larger than the upload limit before reading it."""
        length = request.headers.get("content-length")
        limit = get_settings().max_upload_bytes + BODY_SLACK
        if length and length.isdigit() and int(length) > limit:
            return problem_response(
                request, 413, "Too large", f"request bodies are limited to {limit} bytes",
                "https://driftscope.dev/problems/too-large",
            )  # fmt: skip
        return await call_next(request)

    for module in (health, diagnoses, reports, features, steer, audits, pages):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
