"""The outbox relay against the real callback and history services over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.history.app import create_app as create_history
from services.history.settings import HistorySettings
from services.intake.models import IntakeOutbox
from shared.db import utcnow
from shared.outbox import OutboxRelay, enqueue
from tests.intake.test_generic_webhook import post_call
from tests.support.infra import free_port
from tests.support.live import LiveServer


@pytest.fixture
async def peers(settings_kwargs: dict[str, Any]) -> AsyncIterator[dict[str, LiveServer]]:
    """Callback and history as real HTTP servers, not yet started."""
    servers = {
        "callback": LiveServer(create_callback(CallbackSettings(**settings_kwargs)), free_port()),
        "history": LiveServer(create_history(HistorySettings(**settings_kwargs)), free_port()),
    }
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
async def relay(
    peers: dict[str, LiveServer],
    sessions: async_sessionmaker[AsyncSession],
    internal_key: str,
) -> AsyncIterator[OutboxRelay]:
    clients = {
        name: httpx.AsyncClient(
            base_url=server.url, headers={"authorization": f"Bearer {internal_key}"}, timeout=5
        )
        for name, server in peers.items()
    }
    yield OutboxRelay(model=IntakeOutbox, session_factory=sessions, clients=clients)
    for client in clients.values():
        await client.aclose()


async def pending(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(IntakeOutbox)
            .where(IntakeOutbox.delivered_at.is_(None), IntakeOutbox.dead_at.is_(None))
        )
    return int(count or 0)


async def make_due(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Skip the backoff wait, as time passing would."""
    async with sessions() as session:
        await session.execute(update(IntakeOutbox).values(available_at=utcnow()))
        await session.commit()


async def history_timeline(history: LiveServer, key: str, phone: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=history.url, headers={"authorization": f"Bearer {key}"}
    ) as c:
        found = (await c.get("/v1/customers", params={"phone": phone})).json()["items"]
        if not found:
            return []
        items: list[dict[str, Any]] = (
            await c.get(f"/v1/customers/{found[0]['id']}/timeline")
        ).json()["items"]
        return items


async def test_peers_down_then_up_everything_arrives_once(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    for i in range(5):
        response = await post_call(intake, webhook_secret, **{"from": f"040 555 01{i:02d}"})
        assert response.status_code == 202

    assert await relay.run_once() == 0, "nothing can be delivered while the peers are down"
    async with sessions() as session:
        rows = (await session.scalars(select(IntakeOutbox))).all()
    assert all(row.attempts == 1 and row.last_error for row in rows)
    assert all(row.available_at > utcnow() for row in rows), "a retry waits for its backoff"

    for server in peers.values():
        await server.start()
    await make_due(sessions)
    while await relay.run_once():
        pass
    assert await pending(sessions) == 0

    # Delivering again (a relay that crashed before recording success) changes nothing.
    async with sessions() as session:
        await session.execute(update(IntakeOutbox).values(delivered_at=None))
        await session.commit()
    while await relay.run_once():
        pass
    key = await make_key("history:read", "callbacks:read")
    for i in range(5):
        timeline = await history_timeline(
            peers["history"], key, f"+35840555 01{i:02d}".replace(" ", "")
        )
        assert [event["type"] for event in timeline].count("missed_call") == 1
    async with httpx.AsyncClient(base_url=peers["callback"].url) as c:
        listed = await c.get(
            "/v1/callbacks", params={"limit": 50}, headers={"authorization": f"Bearer {key}"}
        )
    assert listed.status_code == 200
    assert len(listed.json()["items"]) == 5


async def test_rows_of_one_customer_keep_their_order(
    relay: OutboxRelay,
    peers: dict[str, LiveServer],
    sessions: async_sessionmaker[AsyncSession],
    clean_db: None,
) -> None:
    async with sessions() as session:
        await enqueue(
            session,
            IntakeOutbox,
            destination="history",
            path="/v1/events",
            payload={},
            ordering_key="k1",
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="history",
            path="/v1/events",
            payload={},
            ordering_key="k1",
        )
        await enqueue(
            session,
            IntakeOutbox,
            destination="history",
            path="/v1/events",
            payload={},
            ordering_key="k2",
        )
        await session.commit()
        first_id = await session.scalar(select(func.min(IntakeOutbox.id)))
        # The first row of k1 is waiting for a retry an hour from now.
        await session.execute(
            update(IntakeOutbox)
            .where(IntakeOutbox.id == first_id)
            .values(available_at=utcnow() + timedelta(hours=1))
        )
        await session.commit()
    for server in peers.values():
        await server.start()

    await relay.run_once()

    async with sessions() as session:
        rows = {row.id: row for row in (await session.scalars(select(IntakeOutbox))).all()}
    ordered = sorted(rows)
    assert rows[ordered[1]].attempts == 0, "k1's second row waits behind its first"
    assert rows[ordered[2]].attempts == 1, "another customer's row is not held up"


async def test_a_refused_row_is_parked_and_does_not_block_its_customer(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await enqueue(
            session,
            IntakeOutbox,
            destination="history",
            path="/v1/events",
            payload={"not": "an event"},
            ordering_key="+358401234567",
        )
        await session.commit()
    await post_call(intake, webhook_secret, **{"from": "040 123 4567"})
    for server in peers.values():
        await server.start()

    while await relay.run_once():
        pass

    async with sessions() as session:
        rows = (await session.scalars(select(IntakeOutbox).order_by(IntakeOutbox.id))).all()
    assert rows[0].dead_at is not None
    assert "422" in (rows[0].last_error or "")
    assert all(row.delivered_at is not None for row in rows[1:])


async def test_one_notify_per_transaction_however_many_rows(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], clean_db: None
) -> None:
    """PostgreSQL folds repeated NOTIFYs anyway; each extra one is only a wasted round trip."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "pg_notify" in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with sessions() as session:
            for key in ("a", "b", "c"):
                await enqueue(
                    session,
                    IntakeOutbox,
                    destination="history",
                    path="/v1/events",
                    payload={},
                    ordering_key=key,
                )
            await session.commit()
            assert len(statements) == 1
            await enqueue(
                session,
                IntakeOutbox,
                destination="history",
                path="/v1/events",
                payload={},
                ordering_key="d",
            )
            await session.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 2, "a new transaction notifies again"
