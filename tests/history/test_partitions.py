"""Monthly partitions: made ahead by the periodic task, made on demand by ingest, and no
insert ever failing for want of one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history import partitions
from services.history.app import create_app
from services.history.partitions import _AHEAD_LOCK, create_ahead
from services.history.retention import _drop_retired
from shared.db import create_engine, create_session_factory
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.support import infra
from tests.support.pgbouncer import pgbouncer


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = CAST('history.events' AS regclass)"
            )
        )
        return set(rows)


@pytest.fixture
async def own_months(engine: AsyncEngine) -> AsyncIterator[None]:
    """Drop the month partitions a test made, so other tests' plans see the usual months."""
    before = await _tables(engine)
    yield
    made = await _tables(engine) - before
    async with engine.begin() as conn:
        for name in made:
            await conn.execute(text(f"DROP TABLE history.{name}"))


async def _where(engine: AsyncEngine, event_id: str) -> list[str]:
    """The partition(s) holding the event's row."""
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text("SELECT tableoid::regclass::text FROM history.events WHERE id = :id"),
            {"id": event_id},
        )
        return list(rows)


async def test_ingest_makes_a_missing_month_and_stores_the_row_in_it(
    client: AsyncClient, writer: dict[str, str], engine: AsyncEngine, own_months: None
) -> None:
    assert "events_p2019_03" not in await _tables(engine)
    body = make_event(occurred_at="2019-03-31T23:30:00-02:00")  # April 1st in UTC
    response = await client.post("/v1/events", json=body, headers=writer)
    assert response.status_code == 201, response.text
    assert await _where(engine, body["id"]) == ["history.events_p2019_04"]
    # Months are UTC months: the last hour of March in UTC is March's.
    march = make_event(occurred_at="2019-03-31T23:30:00Z")
    assert (await client.post("/v1/events", json=march, headers=writer)).status_code == 201
    assert await _where(engine, march["id"]) == ["history.events_p2019_03"]


async def test_a_month_past_the_window_waits_in_the_default_partition(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings_kwargs: dict[str, Any],
    own_months: None,
) -> None:
    # A clock years off: stored and shown, but no partition is made for it on the spot.
    body = make_event(occurred_at="2040-06-15T08:00:00Z")
    response = await client.post("/v1/events", json=body, headers=writer)
    assert response.status_code == 201, response.text
    assert await _where(engine, body["id"]) == ["history.events_default"]
    # When its time comes, the periodic task moves it into its own month.
    settings = history_settings(settings_kwargs)
    made = await create_ahead(
        engine=engine, sessions=sessions, settings=settings, now=datetime(2040, 5, 2, tzinfo=UTC)
    )
    assert made is not None
    assert "events_p2040_06" in made
    assert await _where(engine, body["id"]) == ["history.events_p2040_06"]
    timeline = await client.get(
        f"/v1/customers/{response.json()['customer_id']}/timeline", headers=reader
    )
    assert [item["id"] for item in timeline.json()["items"]] == [body["id"]]


async def test_an_insert_never_waits_long_for_a_busy_table(
    client: AsyncClient,
    writer: dict[str, str],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings_kwargs: dict[str, Any],
    own_months: None,
) -> None:
    # A long reader holds the events table: making a partition would wait for it (and make
    # every other reader wait behind), so the row goes to the default partition instead.
    async with engine.connect() as reader_conn:
        await reader_conn.execute(text("LOCK TABLE history.events IN ACCESS SHARE MODE"))
        body = make_event(occurred_at="2018-07-04T12:00:00Z")
        response = await client.post("/v1/events", json=body, headers=writer)
        assert response.status_code == 201, response.text
        await reader_conn.rollback()
    assert await _where(engine, body["id"]) == ["history.events_default"]
    assert "events_p2018_07" not in await _tables(engine)
    # The next event of that month, with the table free, makes the month and moves the
    # first one into it too.
    later = make_event(occurred_at="2018-07-05T12:00:00Z")
    assert (await client.post("/v1/events", json=later, headers=writer)).status_code == 201
    assert await _where(engine, body["id"]) == ["history.events_p2018_07"]
    assert await _where(engine, later["id"]) == ["history.events_p2018_07"]


async def test_the_task_makes_the_coming_months_once(
    clean_db: None,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings_kwargs: dict[str, Any],
    own_months: None,
) -> None:
    settings = history_settings(settings_kwargs, history_partitions_months_ahead=2)
    now = datetime(2033, 11, 20, tzinfo=UTC)
    made = await create_ahead(engine=engine, sessions=sessions, settings=settings, now=now)
    assert made == ["events_p2033_11", "events_p2033_12", "events_p2034_01"]
    assert await create_ahead(engine=engine, sessions=sessions, settings=settings, now=now) == []
    # Another instance at it: this one steps aside.
    async with engine.connect() as other:
        await other.execute(
            text("SELECT pg_advisory_lock(:a, :b)"), {"a": _AHEAD_LOCK[0], "b": _AHEAD_LOCK[1]}
        )
        assert await create_ahead(engine=engine, sessions=sessions, settings=settings) is None
        await other.execute(
            text("SELECT pg_advisory_unlock(:a, :b)"), {"a": _AHEAD_LOCK[0], "b": _AHEAD_LOCK[1]}
        )
        await other.commit()


async def test_the_app_makes_months_ahead_periodically(
    clean_db: None,
    engine: AsyncEngine,
    settings_kwargs: dict[str, Any],
    own_months: None,
) -> None:
    settings = history_settings(
        settings_kwargs,
        history_partitions_interval_seconds=0.2,
        history_partitions_months_ahead=12,
    )
    this_month = partitions.month_of(datetime.now(UTC))
    wanted = {partitions.partition_of(partitions.add_months(this_month, n)).name for n in range(13)}
    async for _ in serve_asgi(create_app(settings)):
        async with asyncio.timeout(10):
            while True:
                if wanted <= await _tables(engine):
                    break
                await asyncio.sleep(0.1)


async def test_a_resend_at_another_time_is_the_same_event(
    client: AsyncClient, writer: dict[str, str], engine: AsyncEngine, own_months: None
) -> None:
    # The key is (id, occurred_at); a resend whose time changed lands in another month,
    # and is still recognised by its id.
    body = make_event(occurred_at="2026-10-31T23:59:00Z")
    first = await client.post("/v1/events", json=body, headers=writer)
    assert first.status_code == 201
    moved = {**body, "occurred_at": "2026-11-01T00:01:00Z"}
    again = await client.post("/v1/events:batch", json={"events": [moved, body]}, headers=writer)
    assert again.status_code == 200, again.text
    assert [item["status"] for item in again.json()["items"]] == ["duplicate", "duplicate"]
    assert [item["event"] for item in again.json()["items"]] == [first.json()] * 2
    assert await _where(engine, body["id"]) == ["history.events_p2026_10"]


async def test_months_are_made_and_dropped_through_pgbouncer(
    clean_db: None,
    database: infra.TestDatabase,
    settings_kwargs: dict[str, Any],
    engine: AsyncEngine,
    tmp_path: Path,
    own_months: None,
) -> None:
    direct = engine
    # Transaction pooling over two server connections: each month's DDL is one transaction,
    # the electing session locks go to PostgreSQL directly.
    with pgbouncer(database.url, tmp_path / "pgbouncer.log", pool_size=2) as bouncer:
        settings = history_settings(
            settings_kwargs,
            database_url=bouncer.url,
            db_pooler="pgbouncer",
            database_direct_url=database.url,
        )
        pooled = create_engine(settings, application_name="ringback.tests", service="history")
        sessions = create_session_factory(pooled)
        try:
            now = datetime(2034, 6, 10, tzinfo=UTC)
            made = await create_ahead(engine=pooled, sessions=sessions, settings=settings, now=now)
            assert made == [f"events_p2034_{m:02d}" for m in (6, 7, 8, 9)]
            # Retention's steps for June: detached in one transaction, dropped in another.
            async with sessions() as session, session.begin():
                await partitions.detach_month(
                    session, partitions.partition_of(now), lock_timeout_ms=2000
                )
            assert await _drop_retired(sessions) == (0, 0)
        finally:
            await pooled.dispose()
    left = await _tables(direct)
    assert "events_p2034_06" not in left
    assert "events_p2034_09" in left
