"""`create_app(settings)` for intake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import start_http_server

from services.intake import dialing, inbound_sms, voicemail, waiting
from services.intake.api import contact, operators, selfservice, webhooks
from services.intake.metrics import IntakeMetrics
from services.intake.settings import IntakeSettings
from shared.http import internal_client
from shared.ratelimit import RateLimiter
from shared.service_app import create_service_app

# Without any configured secret (development only) the rate-limit keys are still hashed.
_DEVELOPMENT_KEY = b"ringback-development-rate-limit-key"


def _rate_limit_key(settings: IntakeSettings) -> bytes:
    for secret in (settings.internal_api_key, settings.self_service_secret):
        if secret is not None and secret.get_secret_value():
            return secret.get_secret_value().encode()
    return _DEVELOPMENT_KEY


def create_app(settings: IntakeSettings) -> FastAPI:
    """Intake: verifies, normalises and durably stores everything that comes in."""

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        app.state.rate_limiter = RateLimiter(
            app.state.redis,
            window_seconds=settings.rate_limit_window_seconds,
            secret=_rate_limit_key(settings),
        )
        app.state.callback_client = internal_client(settings, service="intake", peer="callback")
        try:
            yield
        finally:
            await app.state.callback_client.aclose()

    @asynccontextmanager
    async def metrics_port(app: FastAPI) -> AsyncIterator[None]:
        # The same server the relay and the worker use for theirs, on this app's registry: the
        # scraper reads it on a port the internet does not reach (see `metrics_served`).
        if settings.intake_metrics_port is None:
            yield
            return
        server: Any = start_http_server(
            settings.intake_metrics_port,
            addr=settings.intake_metrics_host,
            registry=app.state.registry,
        )
        try:
            yield
        finally:
            http_server, thread = server
            http_server.shutdown()
            http_server.server_close()
            thread.join(timeout=5)

    app = create_service_app(
        name="intake",
        settings=settings,
        routers=[
            webhooks,
            inbound_sms.router,
            dialing.router,
            contact,
            operators,
            selfservice,
            waiting.offers,
            waiting.twiml,
            voicemail.twiml,
            voicemail.webhooks,
        ],
        peers=["callback", "history"],
        description="Missed-call webhooks and contact requests, stored before they are answered.",
        extensions=[metrics_port, resources],
    )
    app.state.intake_metrics = IntakeMetrics(app.state.registry)
    return app
