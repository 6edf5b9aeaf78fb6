"""`POST /v1/callbacks:batch`: intake's relay sends the creates of one pass together. Each item
must come out exactly as `POST /v1/callbacks` would have made it alone, and a repeat must
replay, because the relay sends a batch again after a timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback
from tests.callback.conftest import ConfirmOwed
from tests.callback.helpers import callback_body

BATCH = "/v1/callbacks:batch"
MakeKey = Callable[..., Awaitable[str]]


def _mix(numbers: tuple[str, str, str]) -> list[dict[str, Any]]:
    """A new number, the same number again (a merge), another new one, and a premium-rate
    number (declined: 202)."""
    first, second, premium = numbers
    return [
        callback_body(phone=first),
        callback_body(phone=first, source="contact_request", channel="web"),
        callback_body(phone=second, email=None),
        callback_body(phone=premium),
    ]


def _seen(code: int, answer: dict[str, Any]) -> tuple[Any, ...]:
    """What a caller reads from an answer, the ids and times aside."""
    return (code, answer["status"], answer["merged"], answer["contact_count"], answer["flag"])


async def _count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Callback)) or 0)


async def test_each_item_is_made_as_the_single_create_makes_it(
    client: AsyncClient, auth: dict[str, str], confirm_owed: ConfirmOwed
) -> None:
    batch = await client.post(
        BATCH,
        json={"callbacks": _mix(("+358401110001", "+358401110002", "+358600123456"))},
        headers=auth,
    )
    assert batch.status_code == 200, batch.text
    items = batch.json()["items"]

    singles = []
    for body in _mix(("+358402220001", "+358402220002", "+358600123457")):
        response = await client.post("/v1/callbacks", json=body, headers=auth)
        singles.append(_seen(response.status_code, response.json()))

    assert [_seen(item["code"], item["callback"]) for item in items] == singles
    assert [code for code, *_ in singles] == [201, 200, 201, 202]
    # The merge joined the first item's callback, made in the same batch.
    assert items[1]["callback"]["id"] == items[0]["callback"]["id"]
    # Each callback made is owed its confirmation, batch or not.
    owed = await confirm_owed()
    made = {item["callback"]["id"] for item in items if item["callback"]["id"]}
    assert made <= set(owed)
    assert len(owed) == 4


async def test_a_batch_sent_again_replays_every_item(
    client: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = {"callbacks": _mix(("+358401110011", "+358401110012", "+358600123456"))}
    first = await client.post(BATCH, json=body, headers=auth)
    again = await client.post(BATCH, json=body, headers=auth)

    assert first.status_code == again.status_code == 200
    assert [item["code"] for item in again.json()["items"]] == [200, 200, 200, 200]
    assert [item["callback"] for item in again.json()["items"]] == [
        item["callback"] for item in first.json()["items"]
    ]
    assert await _count(sessions) == 2


async def test_a_refused_item_is_named_and_the_items_before_it_stay_made(
    client: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    good = callback_body(phone="+358401110021")
    bad = callback_body(phone="not a number at all")
    after = callback_body(phone="+358401110022")
    response = await client.post(BATCH, json={"callbacks": [good, bad, after]}, headers=auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["item"], problem["made"]) == (1, 1)
    assert problem["errors"][0]["loc"] == ["body", "callbacks", 1, "phone"]
    assert await _count(sessions) == 1

    # The relay then sends each on its own: the first replays, the last is made.
    replay = await client.post("/v1/callbacks", json=good, headers=auth)
    assert replay.status_code == 200
    assert (await client.post("/v1/callbacks", json=after, headers=auth)).status_code == 201


async def test_a_malformed_item_stores_nothing(
    client: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    items = [callback_body(phone="+358401110031"), {**callback_body(), "source": "pigeon"}]
    response = await client.post(BATCH, json={"callbacks": items}, headers=auth)

    assert response.status_code == 422
    assert ["body", "callbacks", 1, "source"] in [e["loc"] for e in response.json()["errors"]]
    assert await _count(sessions) == 0


async def test_empty_and_oversized_batches_are_refused(
    client: AsyncClient, auth: dict[str, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    empty = await client.post(BATCH, json={"callbacks": []}, headers=auth)
    over = [callback_body(phone=f"+3584011{i:05d}") for i in range(101)]
    oversized = await client.post(BATCH, json={"callbacks": over}, headers=auth)

    assert (empty.status_code, oversized.status_code) == (422, 422)
    assert await _count(sessions) == 0


async def test_only_the_internal_key_may_send_a_batch(
    client: AsyncClient, make_key: MakeKey, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Every item may send a confirmation: other keys create one at a time, each counted
    # against their key's ceiling of sends.
    writer = {"Authorization": f"Bearer {await make_key('callbacks:write')}"}
    body = {"callbacks": [callback_body(phone="+358401110041")]}

    assert (await client.post(BATCH, json=body, headers=writer)).status_code == 403
    assert (await client.post(BATCH, json=body)).status_code == 401
    assert await _count(sessions) == 0
