"""Outgoing HTTP: one pooled client per process, with timeouts and trace propagation."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.trace import SpanKind, StatusCode

from shared.settings import CommonSettings
from shared.tracing import current_request_id, current_trace, start_span


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: each request stands alone.

    The client's own jar parsed every response for `Set-Cookie` through `http.cookiejar`,
    about 60 µs of a request's 400 (bench/RESULTS.md, "fourteenth"), for cookies no peer of
    ours sets; and a jar would hand one subscriber's or gateway's cookie back to it on the
    next request, state no server-to-server call should carry.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class StatelessClient(httpx.AsyncClient):
    """`httpx.AsyncClient` without a cookie jar (`_NoCookies`): for calls between servers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cookies = _NoCookies()


class TracedClient(StatelessClient):
    """Each request is a client span, and carries it as `traceparent` (and our request id).

    The caller's trace continues (or one starts) so a missed call can be followed across
    intake, callback and history. `send()` sees every request, whatever transport or proxy
    it then takes. The span names no path: a path may hold a self-service token.
    """

    def __init__(self, *args: Any, peer: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peer = peer

    async def send(self, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        attributes: dict[str, str | int] = {
            "http.request.method": request.method,
            "server.address": request.url.host,
        }
        if request.url.port is not None:
            attributes["server.port"] = request.url.port
        if self.peer:
            attributes["peer.service"] = f"ringback-{self.peer}"
        with start_span(request.method, kind=SpanKind.CLIENT, attributes=attributes) as span:
            trace = current_trace.get()
            if trace is not None:  # always set inside a span; the check is for the type
                request.headers["traceparent"] = trace.traceparent()
            request_id = current_request_id.get()
            if request_id:
                request.headers.setdefault("x-request-id", request_id)
            response = await super().send(request, *args, **kwargs)
            if span.is_recording():
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_status(StatusCode.ERROR)
            return response


def create_http_client(
    settings: CommonSettings,
    *,
    user_agent: str,
    base_url: str = "",
    bearer: str | None = None,
    timeout: float | None = None,
    peer: str | None = None,
    max_connections: int = 100,
    per_call: bool = False,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` that never waits forever and carries our trace headers.

    `max_connections`: as many as are sent at once, and no more.
    `per_call`: the client sends for every missed call (the SMS, the relays), so its requests
    go over aiohttp's pool (`shared.http_transport`: half httpx's own transport's CPU per
    request). Importing aiohttp costs a process about 6 MiB, so a process that only sends
    now and then (an API's peer client) keeps httpx's own transport and does without it.
    """
    headers = {"user-agent": user_agent}
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    seconds = timeout or settings.http_timeout_seconds
    return TracedClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 3.0)),
        # Keeps every connection it may open: the worker sends up to `worker_max_jobs` (50)
        # at once, and closing all but a few after each burst means new TCP/TLS handshakes.
        transport=_transport(max_connections, per_call=per_call),
        peer=peer,
    )


def _transport(max_connections: int, *, per_call: bool) -> httpx.AsyncBaseTransport:
    if per_call:
        # Imported here: only a process that sends per call pays for aiohttp (see above).
        from shared.http_transport import PooledTransport

        return PooledTransport(max_connections=max_connections)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncHTTPTransport(limits=limits)


# Calls to a peer: an outbox relay sends at most `shared.outbox.DELIVERY_CONCURRENCY` at once,
# so a pool of this size is never short (a synchronous call from a request may add a few).
PEER_CONNECTIONS = 16


def internal_client(
    settings: CommonSettings, *, service: str, peer: str, per_call: bool = False
) -> httpx.AsyncClient:
    """A client for calling a peer service with the internal key (the first, if several).

    `per_call`: as `create_http_client`'s (an outbox relay's client sends for every call)."""
    # Only the first is sent: a rotation moves a new key first once every process accepts it
    # (docs/operations.md, "Rotating secrets"), so no peer ever gets a key it does not know.
    key = next(iter(settings.internal_api_keys()), None)
    return create_http_client(
        settings,
        user_agent=f"ringback-{service}",
        base_url=settings.peer_url(peer),
        bearer=key,
        peer=peer,
        max_connections=PEER_CONNECTIONS,
        per_call=per_call,
    )
