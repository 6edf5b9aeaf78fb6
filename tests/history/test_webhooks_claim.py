"""The webhook relay's claim, one autocommitted statement: which due deliveries a pass takes,
given the slots this relay already has in flight, and what it leaves behind for the others."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history.models import WebhookDelivery, WebhookEndpoint
from services.history.webhook_delivery import _CLAIM
from shared import fast_sql
from shared.db import utcnow

PER_ENDPOINT = 4


async def _seed(sessions: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """Endpoints a (6 due), b (3 due, 1 not yet), off (2 due, turned off)."""
    async with sessions() as session:
        for endpoint, enabled in (("a", True), ("b", True), ("off", False)):
            session.add(
                WebhookEndpoint(
                    id=endpoint,
                    url=f"https://{endpoint}.example/hook",
                    events=["*"],
                    secret=f"whsec_{endpoint}",
                    enabled=enabled,
                )
            )
        await session.flush()
        due = [("a", i) for i in range(6)] + [("b", i) for i in range(3)] + [("off", 0), ("off", 1)]
        for endpoint, i in due:
            session.add(_delivery(endpoint, i, available_at=now - timedelta(minutes=10 - i)))
        session.add(_delivery("b", 9, available_at=now + timedelta(minutes=5)))
        await session.commit()


def _delivery(endpoint: str, i: int, *, available_at: datetime) -> WebhookDelivery:
    return WebhookDelivery(
        endpoint_id=endpoint,
        message_id=f"msg_{endpoint}{i}",
        destination="webhook",
        path="/",
        payload={"i": i},
        ordering_key=f"{endpoint}{i}",
        created_at=available_at,
        available_at=available_at,
        attempts=0,
    )


async def _claim(
    engine: AsyncEngine, now: datetime, *, busy: dict[str, int], room: int = 100
) -> list[tuple[str, str, int]]:
    """(endpoint, message id, tries) of each row a pass claims."""
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        rows = await fast_sql.run(
            conn,
            _CLAIM,
            {
                "per_endpoint": PER_ENDPOINT,
                "room": room,
                "busy_endpoints": list(busy),
                "busy_counts": list(busy.values()),
                "now": now,
                "until": now + timedelta(seconds=30),
            },
        )
    return sorted((row["endpoint_id"], row["message_id"], row["attempts"]) for row in rows)


async def test_a_pass_fills_each_endpoints_free_slots_with_its_earliest_due_rows(
    clean_db: None, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    await _seed(sessions, now)

    claimed = await _claim(engine, now, busy={"a": 3})

    # a has one slot free: its earliest; b all three due, not the one due later; off nothing.
    assert claimed == [
        ("a", "msg_a0", 1),
        ("b", "msg_b0", 1),
        ("b", "msg_b1", 1),
        ("b", "msg_b2", 1),
    ]
    async with sessions() as session:
        leased = (
            await session.scalars(
                select(WebhookDelivery.message_id).where(
                    WebhookDelivery.available_at > now, WebhookDelivery.last_attempt_at == now
                )
            )
        ).all()
    assert sorted(leased) == ["msg_a0", "msg_b0", "msg_b1", "msg_b2"]

    # The leased rows are not due again; a's other rows wait for its slots.
    assert await _claim(engine, now, busy={"a": 4, "b": 3}) == []
    assert await _claim(engine, now, busy={"a": 2, "b": 3}) == [
        ("a", "msg_a1", 1),
        ("a", "msg_a2", 1),
    ]


async def test_a_pass_takes_no_more_than_its_room_and_skips_rows_another_relay_holds(
    clean_db: None, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    await _seed(sessions, now)
    async with sessions() as other_relay:
        await other_relay.execute(
            text("SELECT id FROM history.webhook_deliveries WHERE message_id = 'msg_b0' FOR UPDATE")
        )

        claimed = await _claim(engine, now, busy={}, room=10)

        await other_relay.rollback()
    endpoints: dict[str, Any] = {}
    for endpoint, message_id, _ in claimed:
        endpoints.setdefault(endpoint, []).append(message_id)
    assert endpoints == {"a": ["msg_a0", "msg_a1", "msg_a2", "msg_a3"], "b": ["msg_b1", "msg_b2"]}

    assert len(await _claim(engine, now, busy={}, room=1)) == 1
