"""`GET /v1/queues/{key}/staffing`: 8 synthetic weeks of demand in, the table per hour out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import erlang
from services.callback.models import Agent, Attempt, Callback, Dial, SlotBooking
from shared.ids import new_id

HELSINKI = ZoneInfo("Europe/Helsinki")
# A Tuesday in winter, so the 8 weeks before it share one UTC offset.
TARGET = date(2027, 3, 2)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=HELSINKI).astimezone(UTC)


def _callback(first_contact: datetime, number: int, **values: Any) -> Callback:
    fields: dict[str, Any] = {
        "id": new_id(),
        "phone": f"+3584020{number:05d}",
        "queue": "billing",
        "language": "fi",
        "status": "completed",
        "outcome": "reached",
        "source": "missed_call",
        "channel": "phone",
        "priority": 0,
        "first_contact_at": first_contact,
        "due_at": first_contact,
        "sla_deadline": first_contact + timedelta(hours=2),
        "contact_count": 1,
        "consent_sms": True,
        "consent_email": True,
        "asap": True,
        "booking_seq": 0,
        "attempt_count": 0,
        "closed_at": first_contact + timedelta(hours=1),
        "created_at": first_contact,
        "updated_at": first_contact,
    }
    fields.update(values)
    return Callback(**fields)


async def _eight_weeks(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The Tuesdays before TARGET: 10-11 sees 16 new contacts last week and 8 in each week
    before; 3 customers a week book the 14:00 slot (contacting us at 09:xx); 2 retries a week
    fall due at 12:xx for callbacks that came in on the Monday."""
    rows: list[Any] = []
    number = 0
    for ago in range(1, 9):
        tuesday = TARGET - timedelta(weeks=ago)
        for i in range(16 if ago == 1 else 8):
            number += 1
            rows.append(_callback(_at(tuesday, 10, i * 3), number))
        slot = _at(tuesday, 14)
        rows.append(
            SlotBooking(
                queue="billing", slot_start=slot, slot_end=slot + timedelta(minutes=15),
                capacity=5, booked=3,
            )
        )  # fmt: skip
        for i in range(3):
            number += 1
            rows.append(
                _callback(
                    _at(tuesday, 9, 10 + i), number, asap=False,
                    slot_start=slot, slot_end=slot + timedelta(minutes=15),
                )
            )  # fmt: skip
        for i in range(2):
            number += 1
            retried = _callback(_at(tuesday - timedelta(days=1), 8, i), number)
            rows.append(retried)
            rows.append(
                Attempt(
                    id=new_id(), callback_id=retried.id, number=1, agent_id="anna",
                    outcome="no_answer", next_attempt_at=_at(tuesday, 12, 30 + i),
                    created_at=_at(tuesday - timedelta(days=1), 8, 30),
                )
            )  # fmt: skip
    async with sessions() as session:
        session.add_all([r for r in rows if isinstance(r, SlotBooking)])
        await session.flush()
        session.add_all([r for r in rows if isinstance(r, Callback)])
        await session.flush()
        session.add_all([r for r in rows if isinstance(r, Attempt)])
        await session.commit()


def _queue(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Laskutus",
        "timezone": "Europe/Helsinki",
        "capacity": {
            "business_hours": {"tue": [{"start": "08:00", "end": "16:00"}]},
            "agents": {"tue": {"10": 1}},
            "default_agents": 2,
        },
        **extra,
    }


@pytest.fixture
async def reader(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('callbacks:read')}"}


def _day() -> dict[str, str]:
    return {
        "from": _at(TARGET, 0).isoformat(),
        "to": _at(TARGET + timedelta(days=1), 0).isoformat(),
    }


async def test_eight_weeks_of_demand_give_the_forecast_and_the_agents_per_hour(
    client: AsyncClient,
    admin: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert (await client.put("/v1/queues/billing", json=_queue(), headers=admin)).is_success
    await _eight_weeks(sessions)

    response = await client.get("/v1/queues/billing/staffing", params=_day(), headers=reader)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["method"], body["answer_within_minutes"], body["sla_share"]) == (
        "simulation", 120, 0.8,
    )  # fmt: skip
    hours = {int(h["local_hour"][-5:-3]): h for h in body["hours"]}
    assert len(hours) == 24
    assert hours[0]["start"] == "2027-03-01T22:00:00Z"
    # Weights 8 down to 1 (sum 36): (8 x 16 + 28 x 8) / 36 = 9.78.
    assert hours[10]["forecast"] == 9.78
    # Booked into the 14:00 slot: counted at 14, not when they called (09).
    assert (hours[14]["forecast"], hours[9]["forecast"]) == (3.0, 0.0)
    # Retries count in the hour they fall due.
    assert hours[12]["forecast"] == 2.0
    assert {h for h, row in hours.items() if row["forecast"]} == {10, 12, 14}
    # No dials yet: 6 minutes per attempt. At 10, A = 9.78 x 0.1 h = 0.98 Erlangs, so the
    # 85 % occupancy floor asks for 2, and two agents start everyone within two hours.
    assert all(row["handle_seconds"] == 360.0 for row in hours.values())
    needed = {h: row["needed"] for h, row in hours.items() if row["needed"]}
    assert needed == {10: 2, 12: 1, 14: 1}
    assert [hours[h]["planned"] for h in (7, 8, 10, 12, 15, 16)] == [0, 2, 1, 2, 2, 0]
    assert (hours[10]["gap"], hours[12]["gap"], hours[9]["gap"]) == (1, -1, -2)


async def test_a_window_within_three_handle_times_is_erlang_c(
    client: AsyncClient,
    admin: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # 15 minutes against 6-minute calls: a callback offered in the phone queue.
    goals = {"goals": {"answer_within_minutes": 15, "sla_share": 0.95}}
    await client.put("/v1/queues/billing", json=_queue(**goals), headers=admin)
    await _eight_weeks(sessions)

    body = (await client.get("/v1/queues/billing/staffing", params=_day(), headers=reader)).json()

    assert body["method"] == "erlang_c"
    ten = next(h for h in body["hours"] if h["local_hour"].endswith("10:00"))
    assert ten["needed"] == erlang.agents_needed(
        ten["forecast"] * 360 / 3600, handle_seconds=360, target_seconds=900, share=0.95
    )


async def test_the_handle_time_is_measured_on_dialed_attempts(
    client: AsyncClient,
    admin: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/queues/billing", json=_queue(), headers=admin)
    now = datetime.now(UTC)
    rows: list[Any] = []
    for i, (rang_at, final_at) in enumerate([(20, 12), (30, 18)]):
        callback = _callback(now - timedelta(hours=1), i)
        dial = Dial(
            id=new_id(), callback_id=callback.id, agent_id="anna", dialer="webhook",
            status="ended", created_at=now - timedelta(minutes=rang_at), updated_at=now,
        )  # fmt: skip
        attempt = Attempt(
            id=new_id(), callback_id=callback.id, number=1, agent_id="anna", outcome="reached",
            dial_id=dial.id, final=True, finalized_at=now - timedelta(minutes=final_at),
            created_at=now - timedelta(minutes=final_at + 1),
        )  # fmt: skip
        rows += [callback, dial, attempt]
    # Typed in by hand: no start to measure from, so it does not count.
    manual = _callback(now - timedelta(hours=1), 9)
    rows += [manual, Attempt(id=new_id(), callback_id=manual.id, number=1, agent_id="anna",
                             outcome="reached", created_at=now)]  # fmt: skip
    async with sessions() as session:
        for kind in (Callback, Dial, Attempt):
            session.add_all([r for r in rows if isinstance(r, kind)])
            await session.flush()
        await session.commit()

    body = (await client.get("/v1/queues/billing/staffing", headers=reader)).json()

    # (8 + 12) / 2 minutes, from the dial until the attempt became final.
    assert body["handle_seconds"] == 600.0


async def test_bad_ranges_are_problems(client: AsyncClient, reader: dict[str, str]) -> None:
    backwards = await client.get(
        "/v1/queues/default/staffing",
        params={"from": "2027-03-02T00:00:00Z", "to": "2027-03-01T00:00:00Z"},
        headers=reader,
    )
    too_long = await client.get(
        "/v1/queues/default/staffing",
        params={"from": "2027-03-02T00:00:00Z", "to": "2027-05-02T00:00:00Z"},
        headers=reader,
    )
    naive = await client.get(
        "/v1/queues/default/staffing", params={"from": "2027-03-02T00:00"}, headers=reader
    )
    weeks = await client.get("/v1/queues/default/staffing?weeks=0", headers=reader)
    unknown = await client.get("/v1/queues/nosuch/staffing", headers=reader)

    for response in (backwards, too_long, naive, weeks):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_an_agent_in_two_queues_is_planned_half_in_each(
    client: AsyncClient,
    admin: dict[str, str],
    reader: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/queues/billing", json=_queue(), headers=admin)
    await _eight_weeks(sessions)
    async with sessions() as session:
        session.add_all(
            [
                Agent(id="anna", name="Anna", queues=["billing"], languages=[]),
                Agent(id="bjorn", name="Björn", queues=["billing", "sales"], languages=[]),
            ]
        )
        await session.commit()

    body = (await client.get("/v1/queues/billing/staffing", params=_day(), headers=reader)).json()

    # Anna gives billing all her time, Björn half: a planned agent is 0.75 of one here.
    assert body["planned_share"] == 0.75
    hours = {int(h["local_hour"][-5:-3]): h for h in body["hours"]}
    assert (hours[12]["planned"], hours[12]["gap"]) == (1.5, -0.5)
    assert (hours[10]["planned"], hours[10]["gap"]) == (0.75, 1.25)
