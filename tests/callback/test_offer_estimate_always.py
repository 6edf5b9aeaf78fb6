"""The offer's `estimated_callback_at` is the queue's estimate, there whether or not a callback
is offered (§11): a PBX that may not offer one still tells the caller the wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import DoNotCall
from tests.callback.conftest import InsertCallbacks
from tests.callback.helpers import ALL_DAYS, plan_body

MINUTE = timedelta(minutes=1)


async def _queue(client: AsyncClient, admin: dict[str, str], **extra: Any) -> None:
    body = {"name": "Laskutus", "timezone": "Europe/Helsinki", "capacity": plan_body(agents=2)}
    answer = await client.put("/v1/queues/billing", json={**body, **extra}, headers=admin)
    assert answer.status_code in (200, 201), answer.text


async def _offer(client: AsyncClient, admin: dict[str, str], query: str = "") -> dict[str, Any]:
    answer = await client.get(f"/v1/queues/billing/offer{query}", headers=admin)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_full_withheld_and_do_not_call_still_carry_the_estimate(
    client: AsyncClient,
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _queue(client, admin, offer={"max_waiting": 1})
    now = datetime.now(UTC)
    await insert_callbacks(1, phone="+358401000001", queue="billing", due_at=now - MINUTE)
    async with sessions() as session:
        session.add(DoNotCall(phone="+358401234567", created_at=now))
        await session.commit()

    for query, reason in [
        ("", "full"),
        ("?from=anonymous", "withheld"),
        ("?from=040%20123%204567", "do_not_call"),
    ]:
        body = await _offer(client, admin, query)
        assert (body["offer"], body["reason"]) == (False, reason)
        # Two agents free, one callback ahead: the caller would be called at once.
        spoken = datetime.fromisoformat(body["estimated_callback_at"])
        assert now - MINUTE <= spoken <= datetime.now(UTC) + MINUTE, query


async def test_a_closed_queue_estimates_its_next_opening(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    local = datetime.now(ZoneInfo("Europe/Helsinki"))
    open_day = ALL_DAYS[(local.weekday() + 2) % 7]
    await _queue(client, admin, capacity=plan_body(days=(open_day,), agents=2))

    body = await _offer(client, admin)

    assert (body["offer"], body["reason"]) == (False, "closed")
    opening = datetime.combine(local.date() + timedelta(days=2), datetime.min.time(), local.tzinfo)
    assert datetime.fromisoformat(body["estimated_callback_at"]) == opening
