"""`ringback intake-relay`: forwards intake's outbox to callback and history until stopped.

Everything it needs to resume is in PostgreSQL: a relay that is restarted (or killed; its
row locks die with its connection) picks up every undelivered row where the last one stopped.
It also does intake's housekeeping (old webhook ids, rejected payloads, call legs) and, with
`RINGBACK_RELAY_METRICS_PORT`, serves its Prometheus metrics (delivered, failures, backlog,
lag) on `RINGBACK_RELAY_METRICS_HOST:PORT/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import repository
from services.intake.models import IntakeOutbox
from services.intake.settings import IntakeSettings
from shared.contracts import CALLBACKS_BATCH, EVENTS_BATCH
from shared.db import asyncpg_dsn, create_engine, create_session_factory, utcnow
from shared.http import internal_client
from shared.outbox import OutboxRelay

log = structlog.get_logger("ringback.relay")
# The peers' batch endpoints: the rows of one pass bound for each go in one request.
BATCH_ROUTES = {"history": EVENTS_BATCH, "callback": CALLBACKS_BATCH}

HOUSEKEEPING_SECONDS = 60.0


async def housekeeping(
    settings: IntakeSettings, sessions: async_sessionmaker[AsyncSession]
) -> dict[str, int]:
    """Forget what is no longer needed: bounded storage for rejects, receipts and legs."""
    now = utcnow()
    async with sessions() as session:
        counts = await repository.purge(
            session,
            # Twice the tolerance: a replay older than that fails its timestamp check anyway.
            receipts_before=now - timedelta(seconds=2 * settings.webhook_tolerance_seconds),
            rejected_before=now - timedelta(days=settings.rejected_retention_days),
            legs_before=now - timedelta(days=settings.call_leg_retention_days),
        )
        await session.commit()
    return counts


async def _housekeeping_loop(
    settings: IntakeSettings, sessions: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            counts = await housekeeping(settings, sessions)
            if any(counts.values()):
                log.info("relay.housekeeping", **counts)
        except Exception:
            log.exception("relay.housekeeping.failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=HOUSEKEEPING_SECONDS)


async def run_relay(settings: IntakeSettings, stop: asyncio.Event | None = None) -> None:
    """Deliver until SIGTERM/SIGINT (or `stop`), finishing the batch in hand."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings, application_name="ringback.relay", service="intake")
    sessions = create_session_factory(engine)
    clients = {
        peer: internal_client(settings, service="intake", peer=peer, per_call=True)
        for peer in ("callback", "history")
    }
    registry = CollectorRegistry()
    relay = OutboxRelay(
        model=IntakeOutbox,
        session_factory=sessions,
        clients=clients,
        listen_dsn=asyncpg_dsn(settings.direct_database_url_for("intake")),
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        registry=registry,
        source="intake",
        batch_routes=BATCH_ROUTES,
    )
    server: Any = None
    if settings.relay_metrics_port:
        server = start_http_server(
            settings.relay_metrics_port, addr=settings.relay_metrics_host, registry=registry
        )
    log.info("relay.started", metrics_port=settings.relay_metrics_port)
    keeper = asyncio.create_task(_housekeeping_loop(settings, sessions, stop))
    try:
        await relay.run(stop)
    finally:
        stop.set()
        await keeper
        if server is not None:
            http_server, thread = server
            http_server.shutdown()
            thread.join(timeout=5)
        for client in clients.values():
            await client.aclose()
        await engine.dispose()
        log.info("relay.stopped")
