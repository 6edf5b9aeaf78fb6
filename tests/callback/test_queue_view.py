"""`GET /v1/queue`: what an agent's screen shows, overdue, due now and later, with totals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient

from tests.callback.conftest import InsertCallbacks


@pytest.fixture
async def reader(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('callbacks:read')}"}


def _ids(items: list[dict[str, object]]) -> list[object]:
    return [item["id"] for item in items]


async def test_the_queue_in_groups_in_the_order_claims_take_them(
    client: AsyncClient,
    auth: dict[str, str],
    reader: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    (overdue,) = await insert_callbacks(
        1, phone="+358401000001", due_at=now - 3 * hour, sla_deadline=now - hour
    )
    (old,) = await insert_callbacks(1, phone="+358401000002", due_at=now - hour)
    (new,) = await insert_callbacks(1, phone="+358401000003", due_at=now - timedelta(minutes=1))
    (urgent,) = await insert_callbacks(1, phone="+358401000004", priority=5)
    (lapsed,) = await insert_callbacks(
        1,
        phone="+358401000005",
        status="in_progress",
        agent_id="gone",
        lease_expires_at=now - timedelta(minutes=1),
        due_at=now - 2 * hour,
    )
    (held,) = await insert_callbacks(
        1, phone="+358401000006", status="in_progress", agent_id="anna", lease_expires_at=now + hour
    )
    (tomorrow,) = await insert_callbacks(
        1,
        phone="+358401000007",
        attempt_count=1,  # a retry, due tomorrow
        due_at=now + 24 * hour,
        sla_deadline=now + 25 * hour,
    )
    (soon,) = await insert_callbacks(
        1, phone="+358401000008", due_at=now + hour, sla_deadline=now + 2 * hour
    )
    await insert_callbacks(1, phone="+358401000009", status="completed", outcome="reached")

    response = await client.get("/v1/queue", headers=reader)

    assert response.status_code == 200
    view = response.json()
    assert view["counts"] == {"overdue": 1, "due": 4, "later": 2, "in_progress": 1}
    assert _ids(view["overdue"]) == [overdue]
    assert _ids(view["due"]) == [urgent, lapsed, old, new]
    assert _ids(view["later"]) == [soon, tomorrow]
    shown = _ids(view["overdue"] + view["due"] + view["later"])
    assert held not in shown
    # The agent sees who to call and by when.
    first = view["due"][0]
    assert first["phone"] == "+358401000004"
    assert {"sla_deadline", "due_at", "attempt_count", "contact_count"} <= first.keys()

    # Claims take the due ones in the order shown (the overdue one is older than all).
    claimed = [
        (await client.post("/v1/queue/claim", json={"agent_id": f"a{i}"}, headers=auth)).json()
        for i in range(2)
    ]
    assert [c["id"] for c in claimed] == [urgent, overdue]


async def test_lists_stop_at_the_limit_but_the_counts_do_not(
    client: AsyncClient, reader: dict[str, str], insert_callbacks: InsertCallbacks
) -> None:
    await insert_callbacks(7)

    view = (await client.get("/v1/queue", params={"limit": 3}, headers=reader)).json()

    assert len(view["due"]) == 3
    assert view["counts"]["due"] == 7


async def test_an_empty_queue(client: AsyncClient, reader: dict[str, str], clean_db: None) -> None:
    view = (await client.get("/v1/queue", headers=reader)).json()

    assert view["counts"] == {"overdue": 0, "due": 0, "later": 0, "in_progress": 0}
    assert view["overdue"] == view["due"] == view["later"] == []
    assert datetime.fromisoformat(view["as_of"]).tzinfo is not None


@pytest.mark.parametrize("limit", [0, 201, "many"])
async def test_a_bad_limit_is_a_422(
    client: AsyncClient, reader: dict[str, str], limit: object, clean_db: None
) -> None:
    response = await client.get("/v1/queue", params={"limit": str(limit)}, headers=reader)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_queue_needs_a_key_with_callbacks_read(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]], clean_db: None
) -> None:
    history_only = {"Authorization": f"Bearer {await make_key('history:read')}"}
    writer = {"Authorization": f"Bearer {await make_key('callbacks:write')}"}

    assert (await client.get("/v1/queue")).status_code == 401
    assert (await client.get("/v1/queue", headers=history_only)).status_code == 403
    assert (await client.get("/v1/queue", headers=writer)).status_code == 403
