"""Error answers: bad input is a 422 naming the field, anything unexpected a short 500 with no stack trace.

Under /v2 (the Open Inference Protocol) every error is that protocol's `{"error": "..."}` instead, and bad
input is a 400, as its clients expect.
"""

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from app.encoding import UnknownCategoryError
from app.open_inference import ProtocolError, is_v2_path

log = logging.getLogger(__name__)


async def unknown_category(request: Request, error: Exception) -> JSONResponse:
    """Same shape as FastAPI's own validation errors, so a client handles one format."""
    assert isinstance(error, UnknownCategoryError)
    position = ("instances", error.position) if error.position is not None else ()
    detail = {
        "type": "enum",
        "loc": ["body", *position, error.field],
        "msg": str(error),
        "input": error.value,
        "ctx": {"expected": error.allowed},
    }
    return JSONResponse({"detail": [_json_safe(detail)]}, status_code=422)


def _json_safe(value: Any) -> Any:
    """NaN, infinities and lone surrogates (JSON `"\\ud800"`) as text: echoed as they are, they cannot be
    encoded and FastAPI's own handler fails on them (a 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _is_v2(request: Request) -> bool:
    return is_v2_path(request.url.path)


def _v2_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _json_safe(message)}, status_code=status, headers=headers)


async def protocol_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ProtocolError)
    return _v2_error(error.status, error.message)


async def invalid_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    if _is_v2(request):
        return _v2_error(
            400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        )
    return JSONResponse({"detail": _json_safe(jsonable_encoder(error.errors()))}, status_code=422)


# What FastAPI (fastapi/routing.py) raises, as an HTTPException(400), for a body it cannot even decode: bytes
# that are not UTF-8 (a gzip stream, Latin-1 text), JSON nested deeper than the parser's recursion limit.
# Invalid JSON text is already a RequestValidationError ("json_invalid", loc ["body", <offset>]).
UNPARSABLE_BODY = "There was an error parsing the body"


def _why_unparsable(cause: BaseException | None) -> str:
    if isinstance(cause, UnicodeDecodeError):
        where = f"byte {cause.object[cause.start]:#04x} at offset {cause.start}"
        return f"the body is not UTF-8 encoded JSON ({where}: {cause.reason})"
    if isinstance(cause, RecursionError):
        return "the body's JSON is nested too deeply to be read"
    return "the body could not be read as JSON"


async def http_error(request: Request, error: Exception) -> Response:
    """FastAPI's own answer to an HTTPException, but a body it cannot decode: a 422 naming `body`, in the
    shape of the validation errors (the contract: bad input is a 422 naming the field)."""
    assert isinstance(error, HTTPException)
    if _is_v2(request):
        why = _why_unparsable(error.__cause__) if error.detail == UNPARSABLE_BODY else str(error.detail)
        return _v2_error(error.status_code, why, error.headers)
    if error.status_code != 400 or error.detail != UNPARSABLE_BODY:
        return await http_exception_handler(request, error)
    detail = {"type": "json_invalid", "loc": ["body"], "msg": _why_unparsable(error.__cause__)}
    return JSONResponse({"detail": [detail]}, status_code=422)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    if _is_v2(request):
        return _v2_error(500, "internal error (logged on the server)")
    return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(UnknownCategoryError, unknown_category)
    app.add_exception_handler(ProtocolError, protocol_error)
    app.add_exception_handler(Exception, unexpected)
