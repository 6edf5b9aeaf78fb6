"""Plain ASGI middleware (not BaseHTTPMiddleware, which breaks context variables)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from fastapi import HTTPException
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import problem_response
from shared.metrics import HttpMetrics
from shared.redaction import route_of
from shared.tracing import (
    clean_request_id,
    current_request_id,
    parse_traceparent,
    start_span,
)

log = structlog.get_logger("ringback.http")

# Routes too noisy to log or trace on every call; they are still measured.
_QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


class RequestContextMiddleware:
    """Binds X-Request-ID and the W3C trace to logs, echoes the id, measures the request.

    Each request is a server span named by its route template (`POST /v1/callbacks/{id}`):
    never the raw path or query, which may carry tokens or phone numbers.
    """

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        with start_span(
            method,
            kind=SpanKind.SERVER,
            parent=parse_traceparent(_header(scope, b"traceparent")),
            root=True,
            record=scope.get("path") not in _QUIET_ROUTES,
            bind_logs=True,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        ) as span:
            await self._serve(scope, receive, send, span, method)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, span: Span, method: str
    ) -> None:
        request_id = clean_request_id(_header(scope, b"x-request-id"))
        rid_token = current_request_id.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_of(scope)
            self.metrics.observe(scope["method"], route, status, elapsed)
            if span.is_recording():
                if route != "unmatched":
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
            if route not in _QUIET_ROUTES:
                log.info(
                    "http.request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")
            current_request_id.reset(rid_token)


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether declared by Content-Length or streamed."""

    def __init__(
        self, app: ASGIApp, *, limit: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        # A route that takes batches may allow more than the default, and only that route.
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.limit)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises an HTTPException from body reading as is, so the
                    # problem handler answers 413 for streamed (chunked) bodies too.
                    raise HTTPException(status_code=413, detail=_detail(limit))
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            status=413,
            title="Payload Too Large",
            detail=_detail(limit),
            slug="payload-too-large",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


def _detail(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."
