"""Promises at risk: a known plan, handle time and backlog, and the callbacks a hand
computation says will be late; then an agent more in the plan, and they are back on track."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import promises
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Agent, Callback, CallbackOutbox, PromiseMark, SlotBooking
from services.callback.promise import promised_by_sql
from services.callback.settings import CallbackSettings
from services.callback.tasks import state_of
from services.callback.worker import worker_settings
from shared.service_app import create_redis
from shared.vocabulary import EventType
from tests.callback.conftest import InsertCallbacks, RunWorker, SmsGateway

ALL_DAY = [{"start": "00:00", "end": "24:00"}]
MINUTE = timedelta(minutes=1)
HELSINKI = ZoneInfo("Europe/Helsinki")


def _last_local_noon() -> datetime:
    """Today's (or, before it, yesterday's) noon in the queue's zone, in UTC.

    Tomorrow brings the plan's agents whatever the roster says today (docs/staffing.md), so a
    test of the roster's share run in the last minutes before local midnight would see the
    plan's agents arrive at 00:00; at noon the simulated two hours stay within one day."""
    local = datetime.now(UTC).astimezone(HELSINKI)
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon <= local else noon - timedelta(days=1)).astimezone(UTC)


def _plan(agents: int) -> dict[str, Any]:
    # Open around the clock with `agents` on duty, so the hour the test runs in does not matter.
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return {
        "timezone": "Europe/Helsinki",
        "business_hours": dict.fromkeys(days, ALL_DAY),
        "default_agents": agents,
    }


async def _put_queue(client: AsyncClient, admin: dict[str, str], agents: int) -> None:
    response = await client.put(
        "/v1/queues/billing",
        json={"name": "Laskutus", "timezone": "Europe/Helsinki", "capacity": _plan(agents)},
        headers=admin,
    )
    assert response.status_code in (200, 201), response.text


async def _backlog(insert: InsertCallbacks, now: datetime) -> list[str]:
    """Six callbacks due now in this rank order, each promised within 20 minutes."""
    ids = []
    for i in range(6):
        (one,) = await insert(
            1,
            phone=f"+35840100{i:04d}",
            queue="billing",
            due_at=now - (10 - i) * MINUTE,
            sla_deadline=now + 20 * MINUTE,
        )
        ids.append(one)
    return ids


async def _events(sessions: async_sessionmaker[AsyncSession], type_: str) -> list[str]:
    async with sessions() as session:
        rows = (await session.scalars(select(CallbackOutbox).order_by(CallbackOutbox.id))).all()
    return [row.payload["subject"]["id"] for row in rows if row.payload["type"] == type_]


async def _marked(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessions() as session:
        rows = await session.scalars(select(PromiseMark).where(PromiseMark.at_risk))
        return {row.callback_id for row in rows}


async def test_exactly_the_late_callbacks_are_marked_and_cleared_by_one_more_agent(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin, agents=1)
    now = datetime.now(UTC)
    ids = await _backlog(insert_callbacks, now)
    metrics = promises.PromiseMetrics(CollectorRegistry())

    # By hand: one agent, 6-minute calls (no handle time observed yet), starts at 0, 6, 12,
    # 18, 24 and 30 minutes. Promised by 20 minutes: the fifth and sixth will be late.
    found = await promises.check_all(sessions=sessions, settings=settings, now=now, metrics=metrics)

    assert set(found["billing"].newly) == {ids[4], ids[5]}
    assert await _marked(sessions) == {ids[4], ids[5]}
    assert sorted(await _events(sessions, EventType.CALLBACK_AT_RISK)) == sorted(ids[4:])
    assert metrics.at_risk.labels(queue="billing")._value.get() == 2

    # A minute on, nothing has changed: the same promises are not announced again.
    again = await promises.check_all(
        sessions=sessions, settings=settings, now=now + MINUTE, metrics=metrics
    )
    assert again["billing"].newly == []
    assert len(await _events(sessions, EventType.CALLBACK_AT_RISK)) == 2

    # What the supervisor sees: two at risk, and one agent more would keep them.
    reader = await client.get("/v1/queues/billing/staffing?now=true", headers=admin)
    assert reader.status_code == 200, reader.text
    outlook = reader.json()["now"]
    assert (outlook["at_risk"], outlook["more_agents"]) == (2, 1)
    assert outlook["summary"] == (
        "2 promises at risk in the next 2 hours; 1 more agent now would keep them"
    )

    # Two agents: 0, 0, 6, 6, 12, 12 minutes. Everyone in time; each back on track once.
    await _put_queue(client, admin, agents=2)
    cleared = await promises.check_all(
        sessions=sessions, settings=settings, now=now + MINUTE, metrics=metrics
    )

    assert set(cleared["billing"].recovered) == {ids[4], ids[5]}
    assert await _marked(sessions) == set()
    assert sorted(await _events(sessions, EventType.CALLBACK_BACK_ON_TRACK)) == sorted(ids[4:])
    assert metrics.at_risk.labels(queue="billing")._value.get() == 0


async def test_an_agent_in_two_queues_counts_half_in_each(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin, agents=3)
    await client.put("/v1/queues/sales", json={"name": "Myynti"}, headers=admin)
    async with sessions() as session:
        session.add(
            Agent(
                id="anna",
                name="Anna",
                queues=["billing", "sales"],
                languages=[],
                presence="available",
            )
        )
        await session.commit()
    now = _last_local_noon()
    ids = await _backlog(insert_callbacks, now)

    # Anna alone, half her time here: each call keeps her 12 minutes. Starts at 0, 12, 24...
    # so from the third on, every promise (20 minutes) breaks; the plan's 3 do not help,
    # because the plan caps who is there, it does not bring anyone.
    found = await promises.check_all(sessions=sessions, settings=settings, now=now)

    assert set(found["billing"].newly) == set(ids[2:])


async def test_the_promise_is_one_rule_for_the_api_and_the_job(
    client: AsyncClient,
    auth: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    slot = (now + timedelta(hours=1), now + timedelta(hours=1, minutes=15))
    async with sessions() as session:
        session.add(
            SlotBooking(queue="default", slot_start=slot[0], slot_end=slot[1], capacity=1, booked=1)
        )
        await session.commit()
    (booked,) = await insert_callbacks(
        1,
        status="scheduled",
        asap=False,
        slot_start=slot[0],
        slot_end=slot[1],
        sla_deadline=now + timedelta(hours=2),
    )
    (plain,) = await insert_callbacks(1, phone="+358401099999", sla_deadline=now + MINUTE)

    async with sessions() as session:
        rows = await session.execute(select(Callback.id, promised_by_sql()))
        found: dict[str, datetime] = {row[0]: row[1] for row in rows}
    for callback_id, promised in ((booked, slot[1]), (plain, now + MINUTE)):
        shown = (await client.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
        assert datetime.fromisoformat(shown["promised_by"]) == promised == found[callback_id]


async def test_with_the_offer_on_the_customer_is_offered_a_later_time_once(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    gateway: SmsGateway,
    run_worker: RunWorker,
) -> None:
    offering = settings.model_copy(update={"at_risk_offer": True})
    await _put_queue(client, admin, agents=1)
    now = datetime.now(UTC)
    ids = await _backlog(insert_callbacks, now)
    async with sessions() as session:
        # One customer speaks Swedish; one has said no to SMS.
        for callback_id, values in ((ids[4], {"language": "sv"}), (ids[5], {"consent_sms": False})):
            await session.execute(
                update(Callback).where(Callback.id == callback_id).values(**values)
            )
        await session.commit()
    redis = create_redis(offering)
    try:
        for minute in range(2):
            await promises.check_all(
                sessions=sessions,
                settings=offering,
                now=now + minute * MINUTE,
                notifications=ArqNotificationQueue(redis),
            )
    finally:
        await redis.aclose(close_connection_pool=True)
    await run_worker(offering)

    # Only the fifth gets it (the sixth said no to SMS), once, in Swedish, with the link.
    assert len(gateway.requests) == 1
    sms = gateway.requests[0].json()
    assert sms["to"] == "+358401000004"
    assert "Vi hinner kanske inte ringa" in sms["text"]
    assert "https://asiointi.example.fi/v1/self/" in sms["text"]
    async with sessions() as session:
        offered = await session.scalars(
            select(PromiseMark.callback_id).where(PromiseMark.offered_at.is_not(None))
        )
        assert set(offered) == {ids[4], ids[5]}


async def test_without_the_setting_nobody_is_texted(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
    gateway: SmsGateway,
    run_worker: RunWorker,
) -> None:
    await _put_queue(client, admin, agents=1)
    now = datetime.now(UTC)
    await _backlog(insert_callbacks, now)
    redis = create_redis(settings)
    try:
        found = await promises.check_all(
            sessions=sessions, settings=settings, now=now, notifications=ArqNotificationQueue(redis)
        )
    finally:
        await redis.aclose(close_connection_pool=True)
    await run_worker()

    assert len(found["billing"].newly) == 2
    assert gateway.requests == []


async def test_the_worker_s_minute_job_counts_them_on_its_metrics(
    client: AsyncClient,
    admin: dict[str, str],
    settings: CallbackSettings,
    insert_callbacks: InsertCallbacks,
) -> None:
    await _put_queue(client, admin, agents=1)
    await _backlog(insert_callbacks, datetime.now(UTC))
    ctx: dict[str, Any] = {}
    await worker_settings(settings)["on_startup"](ctx)
    try:
        newly = await promises.check_promises(ctx)
        exposed = generate_latest(state_of(ctx).metrics.registry).decode()
    finally:
        await worker_settings(settings)["on_shutdown"](ctx)

    assert newly == 2
    assert 'ringback_promises_at_risk{queue="billing"} 2.0' in exposed
    cron_names = {job.name for job in worker_settings(settings)["cron_jobs"]}
    assert promises.CHECK_PROMISES in cron_names


async def test_a_queue_with_neither_plan_nor_roster_is_not_judged(
    settings: CallbackSettings,
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    # v1's single queue without a plan: nobody is known to work it, nor known not to.
    await insert_callbacks(6, sla_deadline=datetime.now(UTC) + MINUTE)

    found = await promises.check_all(sessions=sessions, settings=settings, now=datetime.now(UTC))

    assert (found["default"].at_risk, found["default"].newly) == (0, [])
