"""/docs (Swagger UI) and /redoc (ReDoc) in FastAPI's documented way for self-hosted assets: FastAPI's own
pages load their JavaScript, CSS, favicon and fonts from CDNs, so offline they are blank."""

from typing import TypedDict

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    """The prefix a proxy serves the API under (uvicorn --root-path), as FastAPI's own pages use it."""
    root_path: str = request.scope.get("root_path", "")
    return root_path.rstrip("/")


def _vendor(request: Request, name: str) -> str:
    return f"{_root(request)}/vendor/{name}"


class _SchemaAndTitle(TypedDict):
    openapi_url: str
    title: str


def _schema_and_title(request: Request, viewer: str) -> _SchemaAndTitle:
    return {
        "openapi_url": f"{_root(request)}{request.app.openapi_url}",
        "title": f"{request.app.title} - {viewer}",
    }


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        **_schema_and_title(request, "Swagger UI"),
        swagger_js_url=_vendor(request, "swagger-ui-bundle.js"),
        swagger_css_url=_vendor(request, "swagger-ui.css"),
        swagger_favicon_url=_vendor(request, "favicon.png"),
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        **_schema_and_title(request, "ReDoc"),
        redoc_js_url=_vendor(request, "redoc.standalone.js"),
        redoc_favicon_url=_vendor(request, "favicon.png"),
        with_google_fonts=False,
    )
