"""Monthly partitions of `history.events`: their names, creating them ahead and on demand.

Each month of `occurred_at` (UTC) is one partition, `events_pYYYY_MM`; `events_default`
catches any row no month partition takes, so an insert never fails for want of a partition.
A periodic task (every instance runs it, a session advisory lock elects one) creates the
coming months ahead and splits months out of the default partition; ingest creates a
missing month itself, best effort, when it holds a row for it (`ensure_months`).
Retention (`services.history.retention`) detaches and drops whole months.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history.settings import HistorySettings
from shared import partition_names
from shared.db import session_connection, utcnow
from shared.periodic import periodic_extension
from shared.service_app import Extension

log = structlog.get_logger("ringback.history.partitions")

SCHEMA = "history"
PARENT = "events"
DEFAULT_PARTITION = partition_names.default_partition(PARENT)
# A partition retention has detached and not yet dropped (it finishes them on its next run).
RETIRED_PREFIX = partition_names.RETIRED_PREFIX

# (namespace, key) of the session lock electing the one instance that creates ahead.
_AHEAD_LOCK = (0x48495350, 2)  # "HISP", the purge's namespace
# Transaction locks serialising the creators of one month (key: year * 100 + month).
_MONTH_LOCK_NAMESPACE = 0x48495054  # "HIPT"
# Ingest waits at most this long for the table lock a new partition needs: past it the rows
# go to the default partition and the periodic task splits them out later. Short, because
# while it waits every reader of the events queues behind it.
INGEST_LOCK_TIMEOUT_MS = 500
# Ingest creates months this far back and ahead at most; rows dated outside (a clock years
# off) wait in the default partition, so a bad sender cannot make a partition for every
# month of year 9999. Months past retention that it creates, retention drops again.
ON_DEMAND_MONTHS_BACK = 120
ON_DEMAND_MONTHS_AHEAD = 24
# lock_not_available, deadlock_detected: a partition not created now, tried again later.
_GAVE_UP = frozenset({"55P03", "40P01"})


@dataclass(frozen=True, slots=True)
class Partition:
    """One month partition: its table name and the half-open range [start, end) it holds."""

    name: str
    start: datetime
    end: datetime


def month_of(at: datetime) -> datetime:
    """The first instant of `at`'s month in UTC."""
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_of(month: datetime) -> Partition:
    month = month_of(month)
    name = partition_names.month_partition(PARENT, month.year, month.month)
    return Partition(name, month, add_months(month, 1))


def _parse(name: str) -> Partition | None:
    found = partition_names.month_of_partition(PARENT, name)
    if not found:
        return None
    return partition_of(datetime(*found, 1, tzinfo=UTC))


def is_partition(table: str) -> bool:
    """Whether `table` is one of the events' partitions (made at run time, not declared)."""
    return partition_names.is_partition(PARENT, table)


def _bound(at: datetime) -> str:
    # A literal with its offset means the same instant whatever the session's time zone.
    return at.strftime("%Y-%m-%d %H:%M:%S+00")


async def month_partitions(session: AsyncSession) -> list[Partition]:
    """The month partitions attached to the events table, oldest first."""
    names = await session.scalars(
        text(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": f"{SCHEMA}.{PARENT}"},
    )
    found = (_parse(name) for name in names)
    return sorted((p for p in found if p is not None), key=lambda p: p.start)


async def create_month(session: AsyncSession, month: datetime, *, lock_timeout_ms: int) -> bool:
    """Create `month`'s partition in the caller's transaction; False if it already exists.

    Rows of the month waiting in the default partition move into it. Raises a DBAPIError
    when a lock is not had within `lock_timeout_ms` (the caller decides what that means).
    """
    part = partition_of(month)
    await session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:ns, :key)"),
        {"ns": _MONTH_LOCK_NAMESPACE, "key": part.start.year * 100 + part.start.month},
    )
    exists = await session.scalar(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{SCHEMA}.{part.name}"}
    )
    if exists:
        await session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
        return False
    bounds = f"FOR VALUES FROM ('{_bound(part.start)}') TO ('{_bound(part.end)}')"
    waiting = await session.scalar(
        text(
            f"SELECT EXISTS (SELECT FROM ONLY {SCHEMA}.{DEFAULT_PARTITION}"
            " WHERE occurred_at >= :start AND occurred_at < :end)"
        ),
        {"start": part.start, "end": part.end},
    )
    if not waiting:
        await session.execute(
            text(f"CREATE TABLE {SCHEMA}.{part.name} PARTITION OF {SCHEMA}.{PARENT} {bounds}")
        )
    else:
        # PostgreSQL refuses a partition whose rows still sit in the default one: build the
        # month beside, move its rows over, then attach it (which finds the default clean).
        # The default partition is locked first, so no row of the month arrives in between.
        await session.execute(
            text(f"LOCK TABLE ONLY {SCHEMA}.{DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        )
        await session.execute(
            text(
                f"CREATE TABLE {SCHEMA}.{part.name}"
                f" (LIKE {SCHEMA}.{PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
        )
        await session.execute(
            text(
                f"WITH moved AS (DELETE FROM ONLY {SCHEMA}.{DEFAULT_PARTITION}"
                " WHERE occurred_at >= :start AND occurred_at < :end RETURNING *)"
                f" INSERT INTO {SCHEMA}.{part.name} SELECT * FROM moved"
            ),
            {"start": part.start, "end": part.end},
        )
        await session.execute(
            text(f"ALTER TABLE {SCHEMA}.{PARENT} ATTACH PARTITION {SCHEMA}.{part.name} {bounds}")
        )
    await session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    log.info("history.partition.created", partition=part.name, moved_from_default=bool(waiting))
    return True


def gave_up(exc: DBAPIError) -> bool:
    """Whether `exc` is a lock not had in time (or a deadlock): a step to try again later."""
    return getattr(exc.orig, "sqlstate", None) in _GAVE_UP


async def ensure_months(
    session: AsyncSession, times: Collection[datetime], *, now: datetime | None = None
) -> None:
    """Make sure the months of `times` have partitions, inside the caller's transaction.

    Best effort and never an error: a month dated too far back or ahead, or whose table lock
    is busy, is left to the default partition. Costs one catalog look-up when every month
    is there already.
    """
    months = {month_of(at) for at in times}
    if not months:
        return
    attached = {p.start for p in await month_partitions(session)}
    this_month = month_of(now or utcnow())
    oldest = add_months(this_month, -ON_DEMAND_MONTHS_BACK)
    latest = add_months(this_month, ON_DEMAND_MONTHS_AHEAD)
    for month in sorted(months - attached):
        if month < oldest or month > latest:
            continue
        try:
            async with session.begin_nested():
                await create_month(session, month, lock_timeout_ms=INGEST_LOCK_TIMEOUT_MS)
        except DBAPIError as exc:
            # Whatever stopped it, the rows still have the default partition to go to.
            log.warning(
                "history.partition.deferred",
                month=month.date().isoformat(),
                reason="lock busy" if gave_up(exc) else type(exc.orig).__name__,
            )


async def detach_month(session: AsyncSession, part: Partition, *, lock_timeout_ms: int) -> str:
    """Detach a month partition and rename it retired; its name now (dropped by retention)."""
    retired = f"{RETIRED_PREFIX}{part.name}"
    # A moment's exclusive lock on the parent: DETACH ... CONCURRENTLY cannot run inside a
    # transaction, and the rename must commit with the detach (a crash between leaves a
    # retired table that the next run finishes, never an unnamed orphan).
    await session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    await session.execute(
        text(f"ALTER TABLE {SCHEMA}.{PARENT} DETACH PARTITION {SCHEMA}.{part.name}")
    )
    await session.execute(text(f"ALTER TABLE {SCHEMA}.{part.name} RENAME TO {retired}"))
    await session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return retired


async def retired_tables(session: AsyncSession) -> list[str]:
    """Month partitions detached by retention and not yet dropped, oldest first."""
    names = await session.scalars(
        text(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relkind = 'r' AND starts_with(c.relname, :prefix)"
            " ORDER BY c.relname"
        ),
        {"schema": SCHEMA, "prefix": RETIRED_PREFIX + partition_names.month_prefix(PARENT)},
    )
    return list(names)


async def _months_waiting_in_default(
    session: AsyncSession, start: datetime, end: datetime
) -> list[datetime]:
    rows = await session.scalars(
        text(
            "SELECT DISTINCT date_trunc('month', occurred_at, 'UTC')"
            f" FROM ONLY {SCHEMA}.{DEFAULT_PARTITION}"
            " WHERE occurred_at >= :start AND occurred_at < :end"
        ),
        {"start": start, "end": end},
    )
    return [month_of(row) for row in rows]


async def create_ahead(
    *,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings: HistorySettings,
    now: datetime | None = None,
) -> list[str] | None:
    """Create this month's and the next months' partitions, and split out of the default
    partition the months within retention; the names created, or None if another
    instance is at it. One short transaction per month."""
    now = now or utcnow()
    this_month = month_of(now)
    end = add_months(this_month, settings.history_partitions_months_ahead + 1)
    oldest_kept = month_of(now - timedelta(days=settings.history_retention_days))
    async with session_connection(
        engine, settings, service="history", application_name="ringback.history.partitions"
    ) as lock_conn:
        got = await lock_conn.scalar(
            text("SELECT pg_try_advisory_lock(:ns, :key)"),
            {"ns": _AHEAD_LOCK[0], "key": _AHEAD_LOCK[1]},
        )
        await lock_conn.commit()
        if not got:
            log.info("history.partitions.skipped", reason="another instance is at it")
            return None
        created: list[str] = []
        try:
            async with sessions() as session:
                waiting = await _months_waiting_in_default(session, oldest_kept, end)
                await session.commit()
            ahead = settings.history_partitions_months_ahead
            wanted = {add_months(this_month, n) for n in range(ahead + 1)}
            for month in sorted(wanted | set(waiting)):
                try:
                    async with sessions() as session, session.begin():
                        made = await create_month(
                            session,
                            month,
                            lock_timeout_ms=settings.history_partitions_lock_timeout_ms,
                        )
                except DBAPIError as exc:
                    # Tried again next run (a row of the month arriving in the default
                    # partition meanwhile is moved then).
                    log.warning(
                        "history.partition.busy",
                        month=month.date().isoformat(),
                        reason="lock busy" if gave_up(exc) else type(exc.orig).__name__,
                    )
                    continue
                if made:
                    created.append(partition_of(month).name)
        finally:
            await lock_conn.execute(
                text("SELECT pg_advisory_unlock(:ns, :key)"),
                {"ns": _AHEAD_LOCK[0], "key": _AHEAD_LOCK[1]},
            )
            await lock_conn.commit()
    return created


def partitions_extension(settings: HistorySettings) -> Extension:
    """The app extension creating partitions ahead periodically (every instance; one works)."""

    async def work(app: FastAPI, stop: asyncio.Event) -> None:
        await create_ahead(
            engine=app.state.engine, sessions=app.state.session_factory, settings=settings
        )

    # Soon after start, so a fresh install has its months before the first turn.
    return periodic_extension(
        name="history.partitions",
        interval=settings.history_partitions_interval_seconds,
        first_within=30.0,
        work=work,
    )
