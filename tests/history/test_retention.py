"""Retention: old months dropped as partitions, the edge month purged in batches, emptied
customers with them, one purger at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history import partitions
from services.history.app import create_app
from services.history.models import Customer, Event
from services.history.retention import _PURGE_LOCK, purge, run_purge
from shared.db import utcnow
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event

LOCK = {"a": _PURGE_LOCK[0], "b": _PURGE_LOCK[1]}


def _ago(days: int) -> str:
    return (utcnow() - timedelta(days=days)).isoformat()


async def _seed(client: AsyncClient, writer: dict[str, str]) -> dict[str, str]:
    events = [
        # Anonymous and old: the customer has nothing left afterwards.
        make_event(occurred_at=_ago(800), customer={}),
        # Old and new on one number: the old go, the customer stays.
        *(
            make_event(occurred_at=_ago(900 + i), customer={"phone": "0401111111"})
            for i in range(5)
        ),
        make_event(occurred_at=_ago(10), customer={"phone": "0401111111"}),
        # Only old events, but a known number: the customer stays, findable.
        make_event(occurred_at=_ago(731), type="note", customer={"phone": "0402222222"}),
        # Just inside retention.
        make_event(occurred_at=_ago(729), customer={"phone": "0403333333"}),
    ]
    response = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
    assert response.status_code == 200, response.text
    ids = [item["event"]["customer_id"] for item in response.json()["items"]]
    return {"anonymous": ids[0], "mixed": ids[1], "known": ids[7], "recent": ids[8]}


async def test_purge_removes_old_events_in_batches(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    settings_kwargs: dict[str, Any],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    customers = await _seed(client, writer)
    settings = history_settings(
        settings_kwargs, history_retention_days=730, history_purge_batch_size=2
    )
    assert await purge(engine=engine, sessions=sessions, settings=settings) == 7
    assert await purge(engine=engine, sessions=sessions, settings=settings) == 0

    gone = await client.get(f"/v1/customers/{customers['anonymous']}", headers=reader)
    assert gone.status_code == 404
    mixed = (await client.get(f"/v1/customers/{customers['mixed']}", headers=reader)).json()
    assert mixed["counts"] == {"missed_call": 1}
    timeline = await client.get(f"/v1/customers/{customers['mixed']}/timeline", headers=reader)
    assert len(timeline.json()["items"]) == 1
    known = (await client.get(f"/v1/customers/{customers['known']}", headers=reader)).json()
    assert known["counts"] == {}
    assert known["last_contact"] == {}
    assert known["phones"] == ["+358402222222"]
    recent = (await client.get(f"/v1/customers/{customers['recent']}", headers=reader)).json()
    assert recent["counts"] == {"missed_call": 1}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Event)) == 2
        assert await session.scalar(select(func.count()).select_from(Customer)) == 3


async def test_only_one_instance_purges_at_a_time(
    client: AsyncClient,
    writer: dict[str, str],
    settings_kwargs: dict[str, Any],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _seed(client, writer)
    settings = history_settings(settings_kwargs)
    async with engine.connect() as other:
        await other.execute(text("SELECT pg_advisory_lock(:a, :b)"), LOCK)
        assert await purge(engine=engine, sessions=sessions, settings=settings) is None
        await other.execute(text("SELECT pg_advisory_unlock(:a, :b)"), LOCK)
        await other.commit()
    # From the command line (`ringback history purge`), in a process of its own.
    assert await asyncio.to_thread(run_purge, settings) == 7


async def test_the_app_purges_periodically(
    clean_db: None,
    settings_kwargs: dict[str, Any],
    writer: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    settings = history_settings(
        settings_kwargs, history_purge_enabled=True, history_purge_interval_seconds=0.2
    )
    async for client in serve_asgi(create_app(settings)):
        await _seed(client, writer)
        async with asyncio.timeout(10):
            while True:
                async with sessions() as session:
                    if await session.scalar(select(func.count()).select_from(Event)) == 2:
                        break
                await asyncio.sleep(0.1)


async def _months(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.scalars(
            text(
                "SELECT relname FROM pg_class WHERE relnamespace = CAST('history' AS regnamespace)"
                " AND relkind = 'r' AND relname LIKE '%events_p2024%'"
            )
        )
        return set(rows)


async def test_months_past_retention_go_as_whole_partitions(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    settings_kwargs: dict[str, Any],
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # 730 days before this "now" is 2024-12-15 12:00: October and November 2024 are past
    # retention whole, December is the edge month.
    now = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
    phone = {"phone": "0404444444"}
    events = [
        make_event(occurred_at="2024-10-05T10:00:00Z", customer={}),
        make_event(occurred_at="2024-10-10T10:00:00Z", customer=phone),
        make_event(occurred_at="2024-11-20T10:00:00Z", customer=phone, type="note"),
        make_event(occurred_at="2024-12-01T10:00:00Z", customer=phone),
        make_event(occurred_at="2024-12-20T10:00:00Z", customer=phone),
    ]
    response = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
    assert response.status_code == 200, response.text
    anonymous, known = (response.json()["items"][i]["event"]["customer_id"] for i in (0, 1))
    assert {"events_p2024_10", "events_p2024_11", "events_p2024_12"} <= await _months(engine)
    # A purge that stopped after detaching October (a crash, a deploy): the next one
    # finishes it, counts and all.
    async with sessions() as session, session.begin():
        await partitions.detach_month(
            session,
            partitions.partition_of(datetime(2024, 10, 1, tzinfo=UTC)),
            lock_timeout_ms=1000,
        )
    assert "retired_events_p2024_10" in await _months(engine)

    settings = history_settings(settings_kwargs, history_retention_days=730)
    assert await purge(engine=engine, sessions=sessions, settings=settings, now=now) == 4

    # October and November dropped as tables; December kept, with its row inside retention.
    assert await _months(engine) == {"events_p2024_12"}
    gone = await client.get(f"/v1/customers/{anonymous}", headers=reader)
    assert gone.status_code == 404
    profile = (await client.get(f"/v1/customers/{known}", headers=reader)).json()
    assert profile["counts"] == {"missed_call": 1}
    timeline = (await client.get(f"/v1/customers/{known}/timeline", headers=reader)).json()
    assert [item["occurred_at"] for item in timeline["items"]] == ["2024-12-20T10:00:00Z"]
