"""The web page (GET /) and plotly.js, served from the installed plotly package: no CDN, works offline."""

import gzip
import hashlib
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
# The page loads only its own files; plotly.js needs inline styles (it styles the SVG it draws).
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
}
router = APIRouter(include_in_schema=False)


class CompressedAsset:
    """A large, immutable file kept in memory gzipped (plotly.min.js: 4.6 MB, 1.4 MB gzipped)."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.path = path
        self.media_type = media_type

    @cached_property
    def _content(self) -> tuple[bytes, bytes, str]:
        raw = self.path.read_bytes()
        return raw, gzip.compress(raw, compresslevel=6, mtime=0), f'"{hashlib.sha256(raw).hexdigest()[:16]}"'

    def response(self, accept_encoding: str | None, if_none_match: str | None) -> Response:
        raw, zipped, etag = self._content
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
        if if_none_match == etag:
            return Response(status_code=304, headers=headers)
        if accept_encoding and "gzip" in accept_encoding:
            return Response(
                zipped, media_type=self.media_type, headers={**headers, "Content-Encoding": "gzip"}
            )
        return Response(raw, media_type=self.media_type, headers=headers)


def _plotly_js() -> Path:
    """Found without importing plotly (the API needs its JavaScript, not its Python)."""
    spec = find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed: pip install -r api/requirements.txt")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


PLOTLY_JS = CompressedAsset(_plotly_js(), "text/javascript")


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


@router.get("/vendor/plotly.min.js")
async def plotly_js(
    accept_encoding: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return PLOTLY_JS.response(accept_encoding, if_none_match)
