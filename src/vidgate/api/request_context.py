"""The outermost ASGI middleware: request ids, allowed hosts, body limits, HEAD, last-resort 500s.

Pure ASGI rather than BaseHTTPMiddleware: it sits on the hot polling path, and it must be able
to answer before the body is read (413, 415, 403).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from vidgate import errors, metrics
from vidgate.api.envelope import error_payload
from vidgate.logs import current_request_id

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode()
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Scope key holding the method the client sent when the app sees another (HEAD, seen as GET).
ORIGINAL_METHOD = "vidgate.original_method"
_PATHSEND = "http.response.pathsend"
# The route label of requests no route matched (404s, refusals before routing).
UNMATCHED = "unmatched"

logger = logging.getLogger("vidgate.api")


def new_request_id() -> str:
    return f"req_{ULID()}"


def request_id_of(request: Request) -> str:
    request_id = getattr(request.state, "request_id", None)
    return request_id if isinstance(request_id, str) else new_request_id()


def request_method(request: Request) -> str:
    """The method as the client sent it (HEAD where routing saw GET)."""
    method = request.scope.get(ORIGINAL_METHOD)
    return method if isinstance(method, str) else request.method


def too_large_message(limit: int) -> str:
    return f"Request body too large: the limit is {limit} bytes"


class BodyTooLarge(StarletteHTTPException):
    """Raised from receive() when a streamed body passes the limit; rendered as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        allowed_hosts: Iterable[str] = (),
        json_path_prefixes: tuple[str, ...] = ("/api/",),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        self.json_path_prefixes = json_path_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        head = method == "HEAD"
        if head:
            # Every GET route answers HEAD as the GET it mirrors, minus the body: one comparison
            # here rather than a second route per endpoint, and the OpenAPI document keeps one
            # operation per route. Advertising pathsend lets a FileResponse skip reading the file.
            scope = {
                **scope,
                "method": "GET",
                ORIGINAL_METHOD: "HEAD",
                "extensions": {**scope.get("extensions", {}), _PATHSEND: {}},
            }
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        header_value = request_id.encode()
        response_started = False
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal response_started, status
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_HEADER_BYTES, header_value))
                message["headers"] = headers
            elif head:
                # Swallow the body; the last message (or a pathsend) ends the response.
                if message["type"] == _PATHSEND or not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        rejection = self._check_request(scope)
        if rejection is not None:
            await _send_error(send_with_id, rejection, request_id)
            metrics.observe_request(method, UNMATCHED, status, time.perf_counter() - started)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await _send_error(send_with_id, errors.InternalError(), request_id)
        # The route template routing matched (no task ids in labels); set on the shared scope.
        route = getattr(scope.get("route"), "path", UNMATCHED)
        metrics.observe_request(method, route, status, time.perf_counter() - started)

    def _check_request(self, scope: Scope) -> errors.VidgateError | None:
        headers = {name: value for name, value in scope.get("headers", [])}
        if self.allowed_hosts:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if host.rsplit(":", 1)[0].strip("[]") not in self.allowed_hosts:
                return errors.Forbidden("request made on a non-gateway host")
        if scope["method"] not in _BODY_METHODS:
            return None
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_body_bytes
            except ValueError:
                return errors.InvalidRequest("invalid Content-Length header")
            if too_large:
                return errors.PayloadTooLarge(too_large_message(self.max_body_bytes))
        path: str = scope["path"]
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if has_body and path.startswith(self.json_path_prefixes):
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            media_type = content_type.split(";", 1)[0].strip().lower()
            if media_type != "application/json" and not media_type.endswith("+json"):
                shown = media_type or "none"
                return errors.UnsupportedMediaType(
                    f"Content-Type must be application/json (got {shown})"
                )
        return None


async def _send_error(send: Send, error: errors.VidgateError, request_id: str) -> None:
    body = json.dumps(
        error_payload(code=error.code, message=error.message, request_id=request_id)
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
