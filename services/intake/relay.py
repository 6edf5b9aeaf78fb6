"""`ringback relay`: forwards intake's outbox to callback and history until stopped."""

from __future__ import annotations

import asyncio
import signal

import structlog

from services.intake.models import IntakeOutbox
from services.intake.settings import IntakeSettings
from shared.db import asyncpg_dsn, create_engine, create_session_factory
from shared.http import internal_client
from shared.outbox import OutboxRelay

log = structlog.get_logger("ringback.relay")


async def run_relay(settings: IntakeSettings, stop: asyncio.Event | None = None) -> None:
    """Deliver until SIGTERM/SIGINT (or `stop`), finishing the batch in hand."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings, application_name="ringback.relay", service="intake")
    clients = {
        peer: internal_client(settings, service="intake", peer=peer)
        for peer in ("callback", "history")
    }
    relay = OutboxRelay(
        model=IntakeOutbox,
        session_factory=create_session_factory(engine),
        clients=clients,
        listen_dsn=asyncpg_dsn(settings.database_url_for("intake")),
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        source="intake",
    )
    log.info("relay.started")
    try:
        await relay.run(stop)
    finally:
        for client in clients.values():
            await client.aclose()
        await engine.dispose()
        log.info("relay.stopped")
