"""One declaration of an outbox row: the ORM writer and the one-statement writer store the same."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Table, delete, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import IntakeOutbox
from shared.db import asyncpg_dsn, unit_of_work, utcnow
from shared.outbox import (
    NEW_ROW_COLUMNS,
    add_rows,
    channel_for,
    enqueue,
    row_values,
    rows_params,
)

FORWARDS: list[dict[str, Any]] = [
    {
        "destination": "history",
        "path": "/v1/events",
        "payload": {"type": "missed_call", "customer": {"phone": "+358401234567"}},
        "ordering_key": "+358401234567",
    },
    {
        "destination": "callback",
        "path": "/v1/callbacks",
        "payload": {"phone": "+358401234567", "consent": {"sms": True}},
        "ordering_key": "+358401234567",
    },
    {
        "destination": "history",
        "path": "/v1/events",
        "payload": {"type": "contact_request", "data": {"message": "ääkköset"}},
        "ordering_key": "maija@example.fi",
    },
]
# What must differ between two writes of the same rows: the identity and the clock.
UNEQUAL = {"id", "created_at", "available_at"}


def test_a_new_row_sets_every_column_but_the_relays() -> None:
    table = IntakeOutbox.__table__
    assert isinstance(table, Table)
    values = row_values(destination="d", path="/p", payload={}, ordering_key="k")
    assert tuple(values) == NEW_ROW_COLUMNS
    relays = {"id", "last_error", "delivered_at", "dead_at"}
    assert set(NEW_ROW_COLUMNS) == set(table.c.keys()) - relays


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    table = IntakeOutbox.__table__
    async with sessions() as session:
        rows = (await session.execute(select(table).order_by(table.c.id))).mappings().all()
    return [{k: v for k, v in row.items() if k not in UNEQUAL} for row in rows]


async def _empty(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(delete(IntakeOutbox))


async def test_enqueue_and_add_rows_store_the_same_rows_and_wake_the_relays(
    clean_db: None, sessions: async_sessionmaker[AsyncSession], base_env: dict[str, str]
) -> None:
    woken: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(base_env["RINGBACK_DATABASE_URL"]))
    await listener.add_listener(channel_for(IntakeOutbox), lambda *args: woken.put_nowait(args[3]))
    try:
        async with unit_of_work(sessions) as session:
            for forward in FORWARDS:
                await enqueue(session, IntakeOutbox, **forward)
        by_orm = await _stored(sessions)
        # One NOTIFY for each destination's first row, naming it.
        by_orm_woken = [await asyncio.wait_for(woken.get(), timeout=5) for _ in range(2)]
        await _empty(sessions)

        async with unit_of_work(sessions) as session:
            now = utcnow()
            rows = [row_values(**forward, now=now) for forward in FORWARDS]
            await add_rows(session, IntakeOutbox, rows)
        in_one_statement = await _stored(sessions)
        in_one_woken = await asyncio.wait_for(woken.get(), timeout=5)
        await asyncio.sleep(0.2)  # time for a NOTIFY too many to arrive
    finally:
        await listener.close()

    assert len(by_orm) == len(FORWARDS)
    assert in_one_statement == by_orm
    assert by_orm_woken == ["history", "callback"]
    assert set(in_one_woken.split(",")) == {"history", "callback"}
    assert woken.empty(), "one NOTIFY per destination and transaction, however many rows"


async def test_a_destinations_first_row_and_its_wake_up_are_one_round_trip(
    clean_db: None, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A create writes one event: its row and the NOTIFY went as a flush and a NOTIFY, two
    round trips on the request's path. Later rows of the transaction for a destination
    already named join the flush."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        async with unit_of_work(sessions) as session:
            counts = []
            for forward in FORWARDS:  # history, callback, history
                await enqueue(session, IntakeOutbox, **forward)
                counts.append(len(sent))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)

    assert counts == [1, 2, 2], "the second history row waits for the flush"
    assert len(sent) == 3, sent  # the flush of the third
    assert [row["ordering_key"] for row in await _stored(sessions)] == [
        forward["ordering_key"] for forward in FORWARDS
    ]


def test_rows_written_together_share_their_time() -> None:
    first = row_values(destination="d", path="/p", payload={}, ordering_key="k")
    later = {**first, "created_at": first["created_at"].replace(year=2000)}
    with pytest.raises(ValueError, match="differ"):
        rows_params(IntakeOutbox, [first, later])
