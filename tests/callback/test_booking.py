"""Capacity, slots and booking: the plan's rules, DST days, and no overbooking under load."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient
from sqlalchemy import event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback, SlotBooking
from shared.contracts import CallbackState
from tests.callback.conftest import InsertCallbacks, ReadOutboxFn
from tests.callback.helpers import plan_body

HELSINKI = ZoneInfo("Europe/Helsinki")


def _tomorrow_at(hour: int) -> datetime:
    local = datetime.now(HELSINKI) + timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _slots(
    client: AsyncClient, auth: dict[str, str], start: datetime, end: datetime
) -> list[dict[str, object]]:
    response = await client.get(
        "/v1/slots", params={"from": start.isoformat(), "to": end.isoformat()}, headers=auth
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


async def test_capacity_round_trip_and_validation(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    assert (await client.get("/v1/capacity", headers=auth)).status_code == 404
    plan = plan_body(hours=("08:00", "16:00"), days=("mon", "tue"), agents=2)
    plan["agents"] = {"mon": {"8": 3, "12": 0}}
    plan["closed_dates"] = ["2026-12-24"]
    plan["date_overrides"] = {
        "2026-12-23": {"business_hours": [{"start": "09:00", "end": "12:00"}]}
    }

    put = await client.put("/v1/capacity", json=plan, headers=admin)
    assert put.status_code == 200, put.text
    got = (await client.get("/v1/capacity", headers=auth)).json()
    assert got["agents"] == {"mon": {"8": 3, "12": 0}}
    assert got["closed_dates"] == ["2026-12-24"]
    assert got["slot_minutes"] == 15

    # Only admins change it.
    assert (await client.put("/v1/capacity", json=plan, headers=auth)).status_code == 403
    bad = [
        {**plan, "timezone": "Mars/Olympus"},
        {**plan, "slot_minutes": 7},
        {**plan, "business_hours": {"mon": [{"start": "08:10", "end": "16:00"}]}},
        {**plan, "business_hours": {"mon": [{"start": "16:00", "end": "08:00"}]}},
        {
            **plan,
            "business_hours": {
                "mon": [{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]
            },
        },
        {**plan, "business_hours": {"mon": [{"start": "8", "end": "16:00"}]}},
        {**plan, "default_agents": -1},
        {**plan, "agents": {"mon": {"24": 1}}},
        {**plan, "closed_dates": ["2026-01-01"] * 401},
        {**plan, "holidays": []},
    ]
    for body in bad:
        response = await client.put("/v1/capacity", json=body, headers=admin)
        assert response.status_code == 422, body
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_slots_follow_hours_staffing_overrides_and_closed_dates(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    plan = plan_body(hours=("08:00", "10:00"), agents=1, per_agent=2)
    plan["agents"] = {"wed": {"9": 3}}
    plan["closed_dates"] = ["2026-12-25"]
    plan["date_overrides"] = {
        "2026-12-24": {"business_hours": [{"start": "09:00", "end": "09:30"}]}
    }
    assert (await client.put("/v1/capacity", json=plan, headers=admin)).status_code == 200

    # Wed 2026-12-23: 8-9 one agent (2 per slot), 9-10 three agents (6 per slot).
    wednesday = await _slots(
        client, auth, datetime(2026, 12, 23, 0, tzinfo=UTC), datetime(2026, 12, 24, 0, tzinfo=UTC)
    )
    assert [s["capacity"] for s in wednesday] == [2, 2, 2, 2, 6, 6, 6, 6]
    first = wednesday[0]
    assert first["id"] == "2026-12-23T06:00:00Z"
    assert first["start"] == "2026-12-23T06:00:00Z"
    assert first["end"] == "2026-12-23T06:15:00Z"
    assert first["local_start"] == "2026-12-23T08:00:00+02:00"
    assert (first["booked"], first["available"]) == (0, 2)
    assert str(first["label"]).startswith("ke 23.12. klo 8.00")
    christmas_eve = await _slots(
        client, auth, datetime(2026, 12, 24, 0, tzinfo=UTC), datetime(2026, 12, 25, 0, tzinfo=UTC)
    )
    assert [s["local_start"] for s in christmas_eve] == [
        "2026-12-24T09:00:00+02:00",
        "2026-12-24T09:15:00+02:00",
    ]
    christmas = await _slots(
        client, auth, datetime(2026, 12, 25, 0, tzinfo=UTC), datetime(2026, 12, 26, 0, tzinfo=UTC)
    )
    assert christmas == []


async def test_slot_queries_are_bounded_and_authorised(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    too_long = await client.get(
        "/v1/slots",
        params={"from": start.isoformat(), "to": (start + timedelta(days=32)).isoformat()},
        headers=auth,
    )
    assert too_long.status_code == 422
    backwards = await client.get(
        "/v1/slots",
        params={"from": start.isoformat(), "to": (start - timedelta(hours=1)).isoformat()},
        headers=auth,
    )
    assert backwards.status_code == 422
    assert (
        await client.get("/v1/slots", params={"from": "x", "to": "y"}, headers=auth)
    ).status_code == 422
    assert (
        await client.get("/v1/slots", params={"from": start.isoformat(), "to": start.isoformat()})
    ).status_code == 401
    intake = {"Authorization": f"Bearer {await make_key('intake:write')}"}
    ok = await client.get(
        "/v1/slots",
        params={"from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat()},
        headers=intake,
    )
    assert ok.status_code == 200
    assert len(ok.json()["items"]) == 4


async def test_daylight_saving_days_lose_and_double_no_slot(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await client.put("/v1/capacity", json=plan_body(hours=("00:00", "24:00")), headers=admin)
    for day, expected in (("2026-03-29", 92), ("2026-10-25", 100), ("2026-11-01", 96)):
        midnight = datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=HELSINKI)
        next_midnight = (midnight + timedelta(days=1)).replace(tzinfo=HELSINKI)
        # Local midnight to local midnight: 23, 25 and 24 hours of real time.
        slots = await _slots(client, auth, midnight.astimezone(UTC), next_midnight.astimezone(UTC))
        assert len(slots) == expected, day
        starts = [datetime.fromisoformat(str(s["start"])) for s in slots]
        ends = [datetime.fromisoformat(str(s["end"])) for s in slots]
        assert len(set(starts)) == len(starts)  # nothing doubled
        assert all(a == b for a, b in zip(ends, starts[1:], strict=False))  # nothing lost
        assert ends[-1] - starts[0] == next_midnight.astimezone(UTC) - midnight.astimezone(UTC)
        assert all(e - s == timedelta(minutes=15) for s, e in zip(starts, ends, strict=True))
    # Spring: local 03:00-03:59 does not exist; 02:45 is followed by 04:00 summer time.
    spring = await _slots(
        client,
        auth,
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 15, tzinfo=UTC),
    )
    assert [s["local_start"] for s in spring] == [
        "2026-03-29T02:30:00+02:00",
        "2026-03-29T02:45:00+02:00",
        "2026-03-29T04:00:00+03:00",
    ]
    # Autumn: local 03:00-03:59 happens twice, once in summer and once in winter time.
    autumn = await _slots(
        client,
        auth,
        datetime(2026, 10, 24, 23, 45, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 15, tzinfo=UTC),
    )
    assert [s["local_start"] for s in autumn] == [
        "2026-10-25T02:45:00+03:00",
        "2026-10-25T03:00:00+03:00",
        "2026-10-25T03:15:00+03:00",
        "2026-10-25T03:30:00+03:00",
        "2026-10-25T03:45:00+03:00",
        "2026-10-25T03:00:00+02:00",
    ]


async def test_business_hours_on_dst_days_keep_their_local_times(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await client.put("/v1/capacity", json=plan_body(hours=("08:00", "16:00")), headers=admin)
    for day in ("2026-03-29", "2026-10-25"):
        midnight = datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=HELSINKI)
        slots = await _slots(
            client, auth, midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC)
        )
        assert len(slots) == 32
        assert str(slots[0]["local_start"]).startswith(f"{day}T08:00:00")
        assert str(slots[-1]["local_end"]).startswith(f"{day}T16:00:00")


async def test_hundreds_of_concurrent_bookings_never_overbook(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/capacity", json=plan_body(per_agent=5), headers=admin)
    starts = [_tomorrow_at(10) + timedelta(minutes=15 * i) for i in range(4)]
    ids = await insert_callbacks(300)

    responses = await asyncio.gather(
        *(
            client.post(
                f"/v1/callbacks/{callback_id}/book",
                json={"slot_id": _z(starts[i % 4])},
                headers=auth,
            )
            for i, callback_id in enumerate(ids)
        )
    )

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 20, 409: 280}, codes
    assert all(
        r.json()["type"] == "urn:ringback:problem:slot-full"
        for r in responses
        if r.status_code == 409
    )
    async with sessions() as session:
        seats = dict(
            (await session.execute(select(SlotBooking.slot_start, SlotBooking.booked))).all()
        )
        held = Counter(
            (
                await session.scalars(
                    select(Callback.slot_start).where(Callback.status == "scheduled")
                )
            ).all()
        )
    assert seats == dict.fromkeys(starts, 5)
    assert held == dict.fromkeys(starts, 5)
    slots = await _slots(client, auth, starts[0], starts[-1] + timedelta(minutes=15))
    assert [(s["booked"], s["available"]) for s in slots] == [(5, 0)] * 4


async def test_one_callback_holds_one_seat_even_when_booked_concurrently(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    read_outbox: ReadOutboxFn,
) -> None:
    await client.put("/v1/capacity", json=plan_body(per_agent=3), headers=admin)
    starts = [_tomorrow_at(12) + timedelta(minutes=15 * i) for i in range(5)]
    (callback_id,) = await insert_callbacks(1)

    responses = await asyncio.gather(
        *(
            client.post(
                f"/v1/callbacks/{callback_id}/book",
                json={"slot_id": _z(starts[i % 5])},
                headers=auth,
            )
            for i in range(40)
        )
    )

    assert {r.status_code for r in responses} == {200}
    async with sessions() as session:
        total = await session.scalar(select(func.sum(SlotBooking.booked)))
        callback = await session.get(Callback, callback_id)
        assert callback is not None
        held = await session.scalar(
            select(SlotBooking.booked).where(SlotBooking.slot_start == callback.slot_start)
        )
    assert total == 1
    assert held == 1
    assert callback.status == "scheduled"
    assert callback.asap is False
    assert callback.due_at == callback.slot_start
    scheduled = [
        r.payload for r in await read_outbox() if r.payload["type"] == "callback_scheduled"
    ]
    assert scheduled
    assert callback.slot_start is not None
    assert CallbackState.model_validate(scheduled[-1]["data"]).slot_start == callback.slot_start


async def test_rebook_and_cancel_move_seats_in_one_transaction(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await client.put("/v1/capacity", json=plan_body(per_agent=1), headers=admin)
    a, b = _tomorrow_at(9), _tomorrow_at(9) + timedelta(minutes=15)
    first, second = await insert_callbacks(2)

    assert (
        await client.post(f"/v1/callbacks/{first}/book", json={"slot_id": _z(a)}, headers=auth)
    ).status_code == 200
    full = await client.post(f"/v1/callbacks/{second}/book", json={"slot_id": _z(a)}, headers=auth)
    assert full.status_code == 409
    # Rebooking `first` to b frees a for `second`.
    moved = await client.post(f"/v1/callbacks/{first}/book", json={"slot_id": _z(b)}, headers=auth)
    assert moved.status_code == 200
    assert moved.json()["slot_id"] == _z(b)
    assert (
        await client.post(f"/v1/callbacks/{second}/book", json={"slot_id": _z(a)}, headers=auth)
    ).status_code == 200
    # Cancelling gives the seat back; a cancelled callback cannot be booked again.
    cancelled = await client.post(f"/v1/callbacks/{first}/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/v1/callbacks/{first}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.json()["current_status"] == "cancelled"
    assert (
        await client.post(f"/v1/callbacks/{first}/book", json={"slot_id": _z(b)}, headers=auth)
    ).status_code == 409
    async with sessions() as session:
        seats = dict(
            (await session.execute(select(SlotBooking.slot_start, SlotBooking.booked))).all()
        )
    assert seats == {a: 1, b: 0}
    # Slots the plan does not have are refused as bad input.
    for slot in ("nonsense", _z(a + timedelta(minutes=7)), "2020-01-01T10:00:00Z"):
        response = await client.post(
            f"/v1/callbacks/{second}/book", json={"slot_id": slot}, headers=auth
        )
        assert response.status_code == 422, slot
    assert (
        await client.post("/v1/callbacks/nope/book", json={"slot_id": _z(a)}, headers=auth)
    ).status_code == 404


async def test_the_database_refuses_a_seat_past_capacity(
    sessions: async_sessionmaker[AsyncSession], clean_db: None
) -> None:
    """Even a writer that skips our conditional update cannot overbook: the CHECK stands."""
    from sqlalchemy.exc import IntegrityError

    start = _tomorrow_at(8)
    async with sessions() as session:
        session.add(
            SlotBooking(
                slot_start=start, slot_end=start + timedelta(minutes=15), capacity=2, booked=2
            )
        )
        await session.commit()
    async with sessions() as session:
        try:
            await session.execute(update(SlotBooking).values(booked=SlotBooking.booked + 1))
            await session.commit()
        except IntegrityError:
            await session.rollback()
        else:
            raise AssertionError("the CHECK constraint did not refuse the overbooking")


async def test_a_booking_refused_for_a_full_slot_is_one_statement_that_waits_on_no_lock(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Issue #21: most attempts at a popular slot are refused. A refusal is answered from one
    read (the callback, its queue and the slot's count), without a transaction or a lock, so
    it does not queue behind whoever is working on the callback or the slot; a booking with
    room still locks the callback and reads its queue in that same statement."""
    await client.put("/v1/capacity", json=plan_body(per_agent=1), headers=admin)
    full_slot, free_slot = _tomorrow_at(9), _tomorrow_at(9) + timedelta(minutes=15)
    first, second = await insert_callbacks(2)
    booked = await client.post(
        f"/v1/callbacks/{first}/book", json={"slot_id": _z(full_slot)}, headers=auth
    )
    assert booked.status_code == 200
    seen: list[str] = []

    def hook(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        async with sessions() as holder:
            # An agent's transaction holds the callback and the slot (an edit, a rebooking).
            await holder.execute(select(Callback.id).where(Callback.id == second).with_for_update())
            await holder.execute(
                select(SlotBooking.booked)
                .where(SlotBooking.slot_start == full_slot)
                .with_for_update()
            )
            seen.clear()
            # Were it to wait for those locks it would never answer: the guard ends the test.
            full = await asyncio.wait_for(
                client.post(
                    f"/v1/callbacks/{second}/book", json={"slot_id": _z(full_slot)}, headers=auth
                ),
                timeout=30,
            )
            refusal = list(seen)
            await holder.rollback()
        seen.clear()
        fine = await client.post(
            f"/v1/callbacks/{second}/book", json={"slot_id": _z(free_slot)}, headers=auth
        )
    finally:
        event.remove(Engine, "before_cursor_execute", hook)
    assert full.status_code == 409
    assert full.json()["type"] == "urn:ringback:problem:slot-full"
    assert len(refusal) == 1, refusal
    assert "FOR UPDATE" not in refusal[0]
    assert all(table in refusal[0] for table in ("callbacks", "queues", "slot_bookings"))
    assert fine.status_code == 200
    assert fine.json()["slot_id"] == _z(free_slot)
    reading_queues = [s for s in seen if "callback.queues" in s and "FOR UPDATE" in s]
    assert len(reading_queues) == 1, seen
    assert "callback.callbacks" in reading_queues[0]
