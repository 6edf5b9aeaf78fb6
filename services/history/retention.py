"""Retention (DESIGN §5): events older than `history_retention_days` are purged.

In bounded batches (one short transaction each, oldest first), so the purge never holds
long locks or builds a huge transaction; customers left with no events and no identities
go too. One instance at a time: a PostgreSQL advisory lock elects the purger, so every
history instance may run the periodic task.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history import repository
from services.history.settings import HistorySettings
from shared.db import create_engine, create_session_factory, session_connection, utcnow
from shared.service_app import Extension

log = structlog.get_logger("ringback.history.retention")

# (namespace, key) of the advisory lock electing the one purging instance.
_PURGE_LOCK = (0x48495350, 1)  # "HISP"


async def purge(
    *,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings: HistorySettings,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> int | None:
    """Purge events past retention; the number purged, or None if another instance is at it."""
    cutoff = (now or utcnow()) - timedelta(days=settings.history_retention_days)
    # Held across the batches' transactions: one server session, past any pooler.
    async with session_connection(
        engine, settings, service="history", application_name="ringback.history.purge"
    ) as lock_conn:
        got = await lock_conn.scalar(
            text("SELECT pg_try_advisory_lock(:ns, :key)"),
            {"ns": _PURGE_LOCK[0], "key": _PURGE_LOCK[1]},
        )
        await lock_conn.commit()
        if not got:
            log.info("history.purge.skipped", reason="another instance is purging")
            return None
        try:
            total = customers = 0
            while True:
                async with sessions() as session, session.begin():
                    deleted, gone = await repository.purge_batch(
                        session, cutoff=cutoff, limit=settings.history_purge_batch_size
                    )
                total += deleted
                customers += gone
                if deleted < settings.history_purge_batch_size or (stop and stop.is_set()):
                    break
        finally:
            await lock_conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"),
                {"ns": _PURGE_LOCK[0], "key": _PURGE_LOCK[1]},
            )
            await lock_conn.commit()
    log.info("history.purge.done", events=total, customers=customers, cutoff=cutoff.isoformat())
    return total


async def _run_purge(settings: HistorySettings) -> int:
    engine = create_engine(settings, application_name="ringback.history.purge", service="history")
    try:
        purged = await purge(
            engine=engine, sessions=create_session_factory(engine), settings=settings
        )
    finally:
        await engine.dispose()
    return purged or 0


def run_purge(settings: HistorySettings) -> int:
    """Purge once, from the command line (`ringback history-purge`); events purged."""
    return asyncio.run(_run_purge(settings))


def purge_extension(settings: HistorySettings) -> Extension:
    """The app extension purging periodically (every instance runs it; one purges)."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            interval = settings.history_purge_interval_seconds
            # Soon after start (a service restarted often still purges), spread over instances.
            delay = min(interval, 60.0) * (0.5 + random.random() / 2)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    return
                try:
                    await purge(
                        engine=app.state.engine,
                        sessions=app.state.session_factory,
                        settings=settings,
                        stop=stop,
                    )
                except Exception:
                    log.exception("history.purge.failed")
                delay = interval

        task = asyncio.create_task(loop(), name="history.purge")
        try:
            yield
        finally:
            # Not cancelled: a purge stops between batches and releases its lock itself.
            stop.set()
            await task

    return extension
