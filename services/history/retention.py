"""Retention (DESIGN §5): events older than `history_retention_days` are purged.

Whole months past retention go as partitions: detached in a moment's lock, then dropped
with their counts taken off the activity roll-up, one transaction per month. The partial
month at the edge (and old rows in the default partition) are deleted in bounded batches,
one short transaction each, oldest first. Customers left with no events and no identities
go too. One instance at a time: a PostgreSQL advisory lock elects the purger, so every
history instance may run the periodic task.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history import partitions, repository
from services.history.settings import HistorySettings
from shared.db import create_engine, create_session_factory, session_connection, utcnow
from shared.periodic import periodic_extension
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
            total, customers = await _drop_months(
                sessions=sessions, settings=settings, cutoff=cutoff
            )
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


async def _drop_months(
    *, sessions: async_sessionmaker[AsyncSession], settings: HistorySettings, cutoff: datetime
) -> tuple[int, int]:
    """Detach the months wholly past `cutoff` and drop them; (events, customers) gone.

    Months a previous run detached are dropped first: a month made again since (a late
    event) must find its retired name free. A month whose lock is busy waits for next run.
    """
    total, customers = await _drop_retired(sessions)
    async with sessions() as session:
        months = [p for p in await partitions.month_partitions(session) if p.end <= cutoff]
        await session.commit()
    for part in months:
        try:
            async with sessions() as session, session.begin():
                await partitions.detach_month(
                    session, part, lock_timeout_ms=settings.history_partitions_lock_timeout_ms
                )
        except DBAPIError as exc:
            if not partitions.gave_up(exc):
                raise
            log.warning("history.purge.detach_busy", partition=part.name)
    events, gone = await _drop_retired(sessions)
    return total + events, customers + gone


async def _drop_retired(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    async with sessions() as session:
        retired = await partitions.retired_tables(session)
        await session.commit()
    total = customers = 0
    for table in retired:
        async with sessions() as session, session.begin():
            events, gone = await repository.drop_retired_events(session, table)
        log.info("history.purge.month_dropped", partition=table, events=events, customers=gone)
        total += events
        customers += gone
    return total, customers


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

    async def work(app: FastAPI, stop: asyncio.Event) -> None:
        await purge(
            engine=app.state.engine,
            sessions=app.state.session_factory,
            settings=settings,
            stop=stop,
        )

    return periodic_extension(
        name="history.purge",
        interval=settings.history_purge_interval_seconds,
        first_within=60.0,
        work=work,
    )
