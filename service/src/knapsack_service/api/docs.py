"""`/docs`: Swagger UI served from an installed package, so it works without a network.

FastAPI's default page loads Swagger UI's script and style from a public CDN; on the
air-gapped clusters where training usually runs that is a blank page. The assets
come from `swagger-ui-bundle-v2` (Swagger UI 5, which reads OpenAPI 3.1) and are
served under `/docs/assets`; the page itself is FastAPI's, pointed at them. ReDoc
(`/redoc`) has no packaged assets, so it is not served.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `/docs` from local assets (the app is built with docs_url=None)."""
    from swagger_ui_bundle import swagger_ui_path  # only the docs need it

    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    redirect_path = f"{DOCS_PATH}/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_path,
        )

    async def oauth2_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)
    app.add_route(redirect_path, oauth2_redirect, include_in_schema=False)


__all__ = ["ASSETS_PATH", "DOCS_PATH", "install_docs"]
