"""The history service: `create_app(settings)` builds it; nothing is created at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.history.api import router
from services.history.console.routes import console_router
from services.history.erasure import relay_extension
from services.history.partitions import partitions_extension
from services.history.queues import queue_zones_extension
from services.history.retention import purge_extension
from services.history.settings import HistorySettings
from services.history.stream import broadcaster_extension
from services.history.webhook_delivery import webhook_relay_extension
from services.history.webhook_endpoints import webhook_router
from shared.service_app import Extension, create_service_app


def create_app(settings: HistorySettings) -> FastAPI:
    """The history app: the cross-channel contact log and customer summaries."""
    extensions: list[Extension] = [broadcaster_extension(settings), queue_zones_extension(settings)]
    if settings.history_erasure_relay_enabled:
        extensions.append(relay_extension(settings))
    if settings.history_purge_enabled:
        extensions.append(purge_extension(settings))
    if settings.history_partitions_enabled:
        extensions.append(partitions_extension(settings))
    if settings.history_webhook_relay_enabled:
        extensions.append(webhook_relay_extension(settings))
    return create_service_app(
        name="history",
        settings=settings,
        # The agent console: static files that call this API and callback's.
        routers=[router, webhook_router, console_router(settings)],
        peers=["callback", "intake"],
        description="The cross-channel contact log: customers, timelines, where each case stands.",
        # 500 events do not fit the default 64 KiB; only the batch route may take more.
        body_limits={"/v1/events:batch": settings.history_batch_body_limit_bytes},
        extensions=extensions,
    )
