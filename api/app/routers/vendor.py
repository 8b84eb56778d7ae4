"""Third-party browser files (plotly.js, Swagger UI, ReDoc) served from their pinned Python packages: the page
and the docs work with no network at all, and an upgrade is a pin change."""

import gzip
import hashlib
import re
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response, status

router = APIRouter(include_in_schema=False)
# ReDoc's sidebar footer shows a logo fetched from Redocly's CDN: an empty inline image instead.
_REDOCLY_LOGO = re.compile(rb'(alt:"redocly logo",[^}]*?src:)"[^"]*"')
_NO_IMAGE = b"\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E\""


class CompressedAsset:
    """A large, immutable file (plotly.min.js is megabytes) kept in memory, plain and gzipped."""

    def __init__(self, path: Path, media_type: str, rewrite: re.Pattern[bytes] | None = None) -> None:
        self.path = path
        self.media_type = media_type
        self.rewrite = rewrite

    @cached_property
    def _content(self) -> tuple[bytes, bytes, str]:
        raw = self.path.read_bytes()
        if self.rewrite is not None:
            raw, count = self.rewrite.subn(rb"\1" + _NO_IMAGE, raw)
            if count != 1:
                raise RuntimeError(f"{self.path}: expected one {self.rewrite.pattern!r}, found {count}")
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


def _package_dir(package: str) -> Path:
    """Found without importing the package (the API needs its files, not its Python)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package} package is not installed: pip install -r api/requirements.txt")
    return Path(next(iter(spec.submodule_search_locations)))


_PLOTLY = _package_dir("plotly") / "package_data"
_DOCS = _package_dir("fastapi_offline") / "static"
ASSETS = {
    "plotly.min.js": CompressedAsset(_PLOTLY / "plotly.min.js", "text/javascript"),
    "swagger-ui-bundle.js": CompressedAsset(_DOCS / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": CompressedAsset(_DOCS / "swagger-ui.css", "text/css"),
    "redoc.standalone.js": CompressedAsset(_DOCS / "redoc.standalone.js", "text/javascript", _REDOCLY_LOGO),
    "favicon.png": CompressedAsset(_DOCS / "favicon.png", "image/png"),
}


@router.get("/vendor/{name}")
async def vendor_file(
    name: str,
    accept_encoding: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no vendored file {name!r}")
    return asset.response(accept_encoding, if_none_match)
