"""Outgoing HTTP: one pooled client per process, with timeouts and trace propagation."""

from __future__ import annotations

import httpx

from shared.settings import CommonSettings
from shared.tracing import current_request_id, current_trace, new_trace


async def _propagate(request: httpx.Request) -> None:
    # Continue the caller's trace (or start one) so a missed call can be followed across
    # intake, callback and history in the logs.
    trace = current_trace.get() or new_trace()
    request.headers.setdefault("traceparent", trace.child().traceparent())
    request_id = current_request_id.get()
    if request_id:
        request.headers.setdefault("x-request-id", request_id)


def create_http_client(
    settings: CommonSettings,
    *,
    user_agent: str,
    base_url: str = "",
    bearer: str | None = None,
    timeout: float | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` that never waits forever and carries our trace headers."""
    headers = {"user-agent": user_agent}
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    seconds = timeout or settings.http_timeout_seconds
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 3.0)),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        event_hooks={"request": [_propagate]},
    )


def internal_client(settings: CommonSettings, *, service: str, peer: str) -> httpx.AsyncClient:
    """A client for calling a peer service with the internal key."""
    key = settings.internal_api_key.get_secret_value() if settings.internal_api_key else None
    return create_http_client(
        settings, user_agent=f"ringback-{service}", base_url=settings.peer_url(peer), bearer=key
    )
