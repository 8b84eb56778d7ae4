"""Pure ASGI middleware (Starlette's BaseHTTPMiddleware would cost more than a whole prediction)."""

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.ids import new_id
from app.open_inference import is_v2_path

# A client's X-Request-ID is kept when it is 1..128 printable ASCII characters (the prediction log's format).
_VALID_REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,128}").fullmatch


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-ID when valid, else a new uuid4 hex), puts it in
    `request.state.request_id` for the routes (the prediction log) and returns it on every response, the
    413s and errors answered by other middleware included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
        raw = sent if sent is not None and _VALID_REQUEST_ID(sent) else new_id().encode()
        scope.setdefault("state", {})["request_id"] = raw.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics.observe_request(route, scope["method"], status, time.perf_counter() - start)


# A refused body is drained for at most this long: a client trickling its bytes does not hold the connection.
DRAIN_SECONDS = 10.0


class BodyLimitMiddleware:
    """Answers 413 to a body over the limit, before anything parses it (declared or streamed size).

    The rest of a refused body, up to `drain_limit` bytes in all, is read and discarded first: clients that
    send their whole body before reading (urllib, requests) otherwise find the connection reset and never see
    the 413. A larger body is cut off: the server never reads without limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        limits_by_path: dict[str, int],
        drain_limit: int,
        limits_by_pattern: Sequence[tuple[re.Pattern[str], int]] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits_by_path = limits_by_path
        self.limits_by_pattern = limits_by_pattern  # for paths with a variable part, e.g. a model version
        self.drain_limit = drain_limit

    def _limit(self, path: str) -> int:
        limit = self.limits_by_path.get(path)
        if limit is None:
            limit = next(
                (size for pattern, size in self.limits_by_pattern if pattern.fullmatch(path)), self.limit
            )
        return limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            # A client waiting for "100 Continue" has sent nothing yet: it reads the 413 at once.
            if int(declared) <= self.drain_limit and headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive, self.drain_limit)
            await _too_large(send, limit, scope["path"])
            return
        if declared.isdigit() and b"transfer-encoding" not in headers:
            # The server delivers no more than the declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        # No declared length (a chunked upload): read the body here, bounded, then replay it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away mid-body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, self.drain_limit - size)
                await _too_large(send, limit, scope["path"])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and discard the body until it ends, `budget` bytes are read or DRAIN_SECONDS pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while budget > 0:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                budget -= len(message.get("body", b""))


async def _too_large(send: Send, limit: int, path: str) -> None:
    """The 413, in the error format of the path's API: the Open Inference Protocol's under /v2."""
    key = "error" if is_v2_path(path) else "detail"
    body = json.dumps({key: f"request body over {limit} bytes: send less (or split a batch)"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]}
    )
    await send({"type": "http.response.body", "body": body})
