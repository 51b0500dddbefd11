"""Pages for people: the playground at ``/`` and the API docs at ``/docs`` and ``/redoc``.

Nothing comes from a CDN, so the docs work on a machine without internet: Swagger UI's
and ReDoc's files are the ones the ``fastapi-offline`` package ships, served from
``/static/docs``; the playground is one self-contained page
(``service/api/static/playground.html``, vanilla JS over ``WS /v1/stream``). None of these
routes is part of the OpenAPI schema. The app must be made with ``docs_url=None,
redoc_url=None`` so that FastAPI's CDN-based pages do not take these paths first.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

PLAYGROUND = Path(__file__).parent / "static" / "playground.html"
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/static/docs"
_ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
_NO_CACHE = {"Cache-Control": "no-cache"}  # a small page that changes with the server
# The vendors' bundles still name a few outside URLs (ReDoc's logo, Swagger's validator
# badge): the docs pages may load from this server only, so a browser never tries them.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def install(app: FastAPI) -> None:
    """Add ``GET /``, ``/docs``, ``/redoc`` and the docs' static files to ``app``.

    Raises:
        RuntimeError: a file is missing (a broken install), found at start-up rather than
            by the first visitor.
    """
    missing = [name for name in _ASSET_FILES if not (DOCS_ASSETS / name).is_file()]
    if missing or not PLAYGROUND.is_file():
        raise RuntimeError(f"UI files missing: {missing or [str(PLAYGROUND)]}")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    app.mount(ASSETS_PATH, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(PLAYGROUND, media_type="text/html", headers=_NO_CACHE)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} — API docs",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} — API reference",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
