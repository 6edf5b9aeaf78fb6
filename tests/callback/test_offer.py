"""The phone-queue offer (§11): the estimate against a hand computation, the thresholds that
withhold it, and the place a callback asked for in the queue keeps among callbacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import offer, promises
from services.callback.models import Callback, DoNotCall
from services.callback.settings import CallbackSettings
from shared.vocabulary import OfferReason
from tests.callback.conftest import InsertCallbacks
from tests.callback.helpers import callback_body, plan_body

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
MakeKey = Callable[..., Awaitable[str]]


async def _put_queue(
    client: AsyncClient, admin: dict[str, str], *, agents: int = 2, **extra: Any
) -> None:
    body = {"name": "Laskutus", "timezone": "Europe/Helsinki", "capacity": plan_body(agents=agents)}
    response = await client.put("/v1/queues/billing", json={**body, **extra}, headers=admin)
    assert response.status_code in (200, 201), response.text


async def _backlog(insert: InsertCallbacks, now: datetime) -> None:
    """Five callbacks ranked ahead of a caller entering now, and two ranked behind."""
    for i in range(5):
        await insert(1, phone=f"+35840100{i:04d}", queue="billing", due_at=now - (10 - i) * MINUTE)
    # Less urgent, and booked for later: waiting, but never ahead of the new caller.
    await insert(1, phone="+358401009998", queue="billing", priority=-1, due_at=now - 60 * MINUTE)
    await insert(1, phone="+358401009999", queue="billing", due_at=now + 60 * MINUTE)


async def _offer(client: AsyncClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = await client.get(f"/v1/queues/billing/offer{query}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_estimate_matches_a_hand_computation(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin, agents=2)
    now = datetime.now(UTC)
    await _backlog(insert_callbacks, now)

    # By hand: two agents, 6-minute calls (no handle time observed yet). The five ahead start
    # at 0, 0, 6, 6 and 12 minutes; the new caller, sixth, when the second agent frees at 12.
    async with sessions() as session:
        found = await offer.estimate(session=session, settings=settings, key="billing", now=now)

    assert found.offer is True
    assert found.reason is None
    assert found.estimated_callback_at == now + 12 * MINUTE
    assert (found.waiting, found.position) == (7, 6)
    assert found.min_wait_seconds == offer.MIN_WAIT_SECONDS

    # The at-risk job, with that caller's callback in its place, starts it at the same moment.
    (asked,) = await insert_callbacks(1, phone="+358401234000", queue="billing", queued_at=now)
    async with sessions() as session:
        view = await promises.outlook(session, settings, "billing", now=now)
    assert view.starts[view.waiting.ids.index(asked)] == 12 * 60
    async with sessions() as session:
        await session.execute(delete(Callback).where(Callback.id == asked))
        await session.commit()

    # One agent: 0, 6, 12, 18, 24, then the caller at 30 minutes.
    await _put_queue(client, admin, agents=1)
    async with sessions() as session:
        slower = await offer.estimate(session=session, settings=settings, key="billing", now=now)
    assert slower.estimated_callback_at == now + 30 * MINUTE


async def test_the_endpoint_answers_the_contract_to_intake_and_readers(
    client: AsyncClient,
    admin: dict[str, str],
    make_key: MakeKey,
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin, agents=2)
    await _backlog(insert_callbacks, datetime.now(UTC))
    intake = {"Authorization": f"Bearer {await make_key('intake:write')}"}
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    writer = {"Authorization": f"Bearer {await make_key('history:read')}"}

    before = datetime.now(UTC)
    body = await _offer(client, intake, "?from=040%20123%204567")
    assert set(body) >= {"offer", "reason", "estimated_callback_at", "waiting", "position"}
    assert (body["offer"], body["waiting"], body["position"]) == (True, 7, 6)
    spoken = datetime.fromisoformat(body["estimated_callback_at"])
    assert before + 12 * MINUTE <= spoken <= datetime.now(UTC) + 12 * MINUTE
    assert (await _offer(client, reader))["offer"] is True

    assert (await client.get("/v1/queues/billing/offer", headers=writer)).status_code == 403
    missing = await client.get("/v1/queues/nowhere/offer", headers=intake)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"max_waiting": 7}, OfferReason.FULL),
        ({"max_waiting": 8}, None),
        # The caller would start in 12 minutes.
        ({"max_wait_minutes": 11}, OfferReason.TOO_LATE),
        ({"max_wait_minutes": 12}, None),
    ],
)
async def test_full_and_too_late_withhold_the_offer(
    client: AsyncClient,
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    policy: dict[str, int],
    reason: OfferReason | None,
) -> None:
    await _put_queue(client, admin, agents=2, offer=policy)
    await _backlog(insert_callbacks, datetime.now(UTC))

    body = await _offer(client, admin)

    assert (body["offer"], body["reason"]) == (reason is None, reason)


async def test_a_queue_closed_today_and_tomorrow_offers_nothing(
    client: AsyncClient, admin: dict[str, str]
) -> None:
    now = datetime.now(ZoneInfo("Europe/Helsinki"))
    # Open only on the day after tomorrow (local): closed today and tomorrow.
    open_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now.weekday() + 2) % 7]
    await _put_queue(client, admin, capacity=plan_body(days=(open_day,)))
    assert (await _offer(client, admin))["reason"] == OfferReason.CLOSED

    tomorrow = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(now.weekday() + 1) % 7]
    await _put_queue(
        client, admin, capacity=plan_body(days=(tomorrow,)), offer={"max_wait_minutes": 2880}
    )
    opened = await _offer(client, admin)
    # Open tomorrow: offered, and the first agent of the day calls back when it opens.
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    assert opened["offer"] is True
    assert datetime.fromisoformat(opened["estimated_callback_at"]) == midnight


async def test_withheld_and_do_not_call_numbers_are_never_offered(
    client: AsyncClient,
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _put_queue(client, admin)
    async with sessions() as session:
        session.add(DoNotCall(phone="+358401234567", created_at=datetime.now(UTC)))
        await session.commit()

    for caller, reason in [
        ("anonymous", OfferReason.WITHHELD),
        ("", OfferReason.WITHHELD),
        ("%2B358600123456", OfferReason.WITHHELD),  # premium rate: no person's line
        ("040%20123%204567", OfferReason.DO_NOT_CALL),
    ]:
        body = await _offer(client, admin, f"?from={caller}")
        assert (body["offer"], body["reason"]) == (False, reason), caller
    assert (await _offer(client, admin, "?from=%2B358401111111"))["offer"] is True


# ----------------------------------------------------------------------------- keeping the place


async def test_a_callback_asked_for_in_the_queue_keeps_its_place_among_callbacks(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin)
    now = datetime.now(UTC)
    queued_at = now - 8 * MINUTE
    spoken = now + 12 * MINUTE
    (earlier,) = await insert_callbacks(
        1, phone="+358401000001", queue="billing", due_at=queued_at - MINUTE
    )
    (later,) = await insert_callbacks(
        1, phone="+358401000002", queue="billing", due_at=queued_at + MINUTE
    )
    (urgent,) = await insert_callbacks(1, phone="+358401000003", queue="billing", priority=2)

    created = await client.post(
        "/v1/callbacks",
        json=callback_body(
            queue="billing",
            phone="+358401000004",
            queued_at=queued_at.isoformat(),
            estimated_callback_at=spoken.isoformat(),
        ),
        headers=auth,
    )

    assert created.status_code == 201, created.text
    waited = created.json()["id"]
    shown = (await client.get(f"/v1/callbacks/{waited}", headers=auth)).json()
    assert shown["requested_in_queue"] is True
    for field in ("queued_at", "rank_at", "first_contact_at"):
        assert datetime.fromisoformat(shown[field]) == queued_at, field
    # Due at once (the estimate is what we told them, not a gate), and promised by it.
    assert now <= datetime.fromisoformat(shown["due_at"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(shown["promised_by"]) == spoken
    assert shown["asap"] is False

    view = await client.get("/v1/queue?queue=billing", headers=auth)
    assert [c["id"] for c in view.json()["due"]] == [urgent, earlier, waited, later]

    # A callback asked for otherwise is neither marked nor promised the spoken time.
    plain = await client.post(
        "/v1/callbacks", json=callback_body(queue="billing", phone="+358401000005"), headers=auth
    )
    other = (await client.get(f"/v1/callbacks/{plain.json()['id']}", headers=auth)).json()
    assert (other["requested_in_queue"], other["queued_at"]) == (False, None)
    assert other["promised_by"] == other["sla_deadline"]


async def test_a_kept_estimate_is_the_simulation_and_a_change_ahead_simulates_afresh(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _put_queue(client, admin, agents=2)
    now = datetime.now(UTC)
    await _backlog(insert_callbacks, now)
    simulated: list[int | None] = []
    read = promises.waiting

    async def counted(*args: Any, **kwargs: Any) -> promises.Waiting:
        simulated.append(kwargs.get("limit"))
        return await read(*args, **kwargs)

    monkeypatch.setattr(promises, "waiting", counted)

    async def ask(at: datetime) -> datetime | None:
        async with sessions() as session:
            found = await offer.estimate(session=session, settings=settings, key="billing", now=at)
        return found.estimated_callback_at

    # Two seconds later, nothing changed: the same simulation's answer, not simulated again.
    assert await ask(now) == now + 12 * MINUTE
    assert await ask(now + 2 * SECOND) == now + 12 * MINUTE
    assert simulated == [5]

    # One more callback ahead: 0, 0, 6, 6, 12, 12, then the caller at 18 minutes.
    await insert_callbacks(1, phone="+358401005555", queue="billing", due_at=now - 11 * MINUTE)
    assert await ask(now + 2 * SECOND) == now + 2 * SECOND + 18 * MINUTE
    assert simulated == [5, 6]

    # A callback ahead moved by a statement that left `updated_at` alone: simulated afresh.
    async with sessions() as session:
        await session.execute(
            update(Callback)
            .where(Callback.phone == "+358401005555")
            .values(due_at=now - 12 * MINUTE)
        )
        await session.commit()
    await ask(now + 3 * SECOND)
    assert simulated == [5, 6, 6]

    # Past the reuse window the same inputs are simulated again.
    await ask(now + 3 * SECOND + offer.ESTIMATE_REUSE + SECOND)
    assert simulated == [5, 6, 6, 6]
