"""/docs (Swagger UI) and /redoc, with their scripts and styles served by the app from the
fastapi-offline package: no CDN, so they work on a machine with no internet."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = "/docs/assets"


PHONE_FIT = """<style>
/* a phone: the schema accordion and the operations stay inside the screen */
.swagger-ui .wrapper { padding: 0 8px; }
.swagger-ui section.models, .swagger-ui .model-container, .swagger-ui .model-box,
.swagger-ui .opblock, .swagger-ui .opblock-body, .swagger-ui .responses-wrapper { max-width: 100%; }
.swagger-ui .model-box, .swagger-ui .opblock-body, .swagger-ui .table-container,
.swagger-ui .highlight-code, .swagger-ui .microlight { overflow-x: auto; }
.swagger-ui .model, .swagger-ui .prop-type, .swagger-ui .renderedMarkdown,
.swagger-ui .opblock-summary-path { overflow-wrap: anywhere; word-break: break-word; }
.swagger-ui table.model { display: block; max-width: 100%; overflow-x: auto; }
.swagger-ui .json-schema-2020-12, .swagger-ui .json-schema-2020-12-head,
.swagger-ui .json-schema-2020-12-accordion, .swagger-ui .json-schema-2020-12-accordion__children,
.swagger-ui .json-schema-2020-12__title, .swagger-ui .json-schema-2020-12-body {
  max-width: 100% !important; min-width: 0; flex-wrap: wrap; white-space: normal;
  overflow-wrap: anywhere; word-break: break-word;
}
.swagger-ui .json-schema-2020-12-accordion { text-align: left; }
</style>
"""


def install_docs(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/v1/openapi.json"
    app.mount(ASSETS, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )
        html = bytes(page.body).decode().replace("</head>", PHONE_FIT + "</head>", 1)
        return HTMLResponse(html)

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
