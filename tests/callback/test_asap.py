"""ASAP means a real time; a chosen slot is booked at create; reminders and notices follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import booking, repository
from services.callback.capacity import CapacityPlan, Slot, iter_slots
from services.callback.models import Callback, Notification, SlotBooking
from services.callback.templates import window_phrase
from tests.callback.conftest import ConfirmOwed, ReadNotificationsFn, ReadOutboxFn, RunWorker
from tests.callback.helpers import callback_body, plan_body

HELSINKI = ZoneInfo("Europe/Helsinki")


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tomorrow_at(hour: int) -> datetime:
    local = datetime.now(HELSINKI) + timedelta(days=1)
    return local.replace(hour=hour, minute=0, second=0, microsecond=0).astimezone(UTC)


async def test_asap_is_booked_into_the_earliest_free_slot_and_the_confirmation_names_it(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    read_outbox: ReadOutboxFn,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    now = datetime.now(UTC)
    plan = CapacityPlan.model_validate(plan_body())
    first, second = list(iter_slots(plan, now, now + timedelta(hours=1)))[:2]
    # The earliest slot is already full: the next one is the promise.
    async with sessions() as session:
        session.add(SlotBooking(slot_start=first.start, slot_end=first.end, capacity=1, booked=1))
        await session.commit()

    created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    assert created["status"] == "pending"
    results = await confirm_owed()

    assert results == {created["id"]: "booked"}
    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert detail["status"] == "scheduled"
    assert detail["slot_id"] == second.id
    assert detail["asap"] is True
    # ASAP stays due at once: the slot is the latest promise, not the earliest.
    assert datetime.fromisoformat(detail["due_at"]) <= datetime.now(UTC)
    sms, email = [n for n in await read_notifications(created["id"]) if n.kind == "confirmation"]
    window = window_phrase("fi", start=second.start, end=second.end, now=now, tz=HELSINKI)
    assert f"Soitamme sinulle {window}." in sms.body
    assert "mahdollisimman pian" not in sms.body
    assert window in email.body
    assert "\u2013" in window  # 14.30-14.45, written with an en dash
    types = [r.payload["type"] for r in await read_outbox()]
    assert types == ["callback_created", "callback_scheduled"]
    claimed = await client.post("/v1/queue/claim", json={"agent_id": "anna"}, headers=auth)
    assert claimed.json()["id"] == created["id"]


async def test_seats_taken_while_the_job_wrote_its_booking_leave_one_booking_in_the_next_slot(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
    read_outbox: ReadOutboxFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job writes a booking for the slot its read showed room in and takes the seat last.
    # Here another booking takes that seat (committed) just before, every time the job tries:
    # twice with the seat last, then the job takes the seat first and gets the third slot.
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    now = datetime.now(UTC)
    plan = CapacityPlan.model_validate(plan_body())
    first, second, third = list(iter_slots(plan, now, now + timedelta(hours=1)))[:3]
    created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    take_last = booking.take_pencilled_seat
    taken_by_others: list[datetime] = []

    async def someone_else_first(session: AsyncSession, callback: Callback, slot: Slot) -> None:
        async with sessions() as other:
            assert await repository.take_seat(
                other, queue=callback.queue, start=slot.start, end=slot.end, capacity=1
            )
            await other.commit()
        taken_by_others.append(slot.start)
        await take_last(session, callback, slot)

    monkeypatch.setattr(booking, "take_pencilled_seat", someone_else_first)
    assert await confirm_owed() == {created["id"]: "booked"}

    assert taken_by_others == [first.start, second.start]
    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert (detail["status"], detail["slot_id"]) == ("scheduled", third.id)
    # What was written for the lost seats was rolled back: one confirmation per channel, one
    # reminder per channel, one event, each for the third slot.
    rows = await read_notifications(created["id"])
    assert sorted((n.kind, n.channel) for n in rows) == [
        ("confirmation", "email"),
        ("confirmation", "sms"),
        ("reminder", "email"),
        ("reminder", "sms"),
    ]
    window = window_phrase("fi", start=third.start, end=third.end, now=now, tz=HELSINKI)
    assert all(window in n.body for n in rows if n.kind == "confirmation")
    assert [r.payload["type"] for r in await read_outbox()] == [
        "callback_created",
        "callback_scheduled",
    ]
    async with sessions() as session:
        seats = dict(
            (await session.execute(select(SlotBooking.slot_start, SlotBooking.booked))).all()
        )
    assert seats == {first.start: 1, second.start: 1, third.start: 1}


async def test_without_a_free_slot_before_the_deadline_it_waits_flagged(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    sessions: async_sessionmaker[AsyncSession],
    read_notifications: ReadNotificationsFn,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    now = datetime.now(UTC)
    plan = CapacityPlan.model_validate(plan_body())
    async with sessions() as session:
        for slot in iter_slots(plan, now, now + timedelta(hours=3)):
            session.add(SlotBooking(slot_start=slot.start, slot_end=slot.end, capacity=1, booked=1))
        await session.commit()

    created = (await client.post("/v1/callbacks", json=callback_body(), headers=auth)).json()
    assert await confirm_owed() == {created["id"]: "no slot"}

    detail = (await client.get(f"/v1/callbacks/{created['id']}", headers=auth)).json()
    assert (detail["status"], detail["flag"], detail["slot_id"]) == (
        "pending",
        "no_slot_before_deadline",
        None,
    )
    sms, _ = await read_notifications(created["id"])
    assert "mahdollisimman pian" in sms.body


async def test_a_chosen_slot_is_booked_at_create_with_a_reminder(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    settings: object,
    confirm_owed: ConfirmOwed,
    read_notifications: ReadNotificationsFn,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    slot = _tomorrow_at(10)
    created = await client.post(
        "/v1/callbacks",
        json=callback_body(preferred={"slot_id": _z(slot)}, language="sv"),
        headers=auth,
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["slot_start"], body["due_at"]) == (
        "scheduled",
        slot.isoformat().replace("+00:00", "Z"),
        slot.isoformat().replace("+00:00", "Z"),
    )
    assert await confirm_owed() == {body["id"]: "confirmed"}
    rows = await read_notifications(body["id"])
    reminders = [n for n in rows if n.kind == "reminder"]
    assert {n.channel for n in reminders} == {"sms", "email"}
    assert all(n.next_attempt_at == slot - timedelta(minutes=15) for n in reminders)
    confirmation = next(n for n in rows if n.kind == "confirmation" and n.channel == "sms")
    assert "i morgon" in confirmation.body
    assert "kl. 10.00\u201310.15" in confirmation.body
    # Not due before its slot starts.
    assert (
        await client.post("/v1/queue/claim", json={"agent_id": "anna"}, headers=auth)
    ).status_code == 204

    # A second customer asking for the same full slot still gets a callback, flagged.
    full = await client.post(
        "/v1/callbacks",
        json=callback_body(phone="040 555 0000", preferred={"slot_id": _z(slot)}),
        headers=auth,
    )
    assert full.status_code == 201
    assert (full.json()["status"], full.json()["flag"]) == ("pending", "requested_slot_full")

    # Rebooking cancels the old reminder and announces the new time.
    later = slot + timedelta(hours=2)
    moved = await client.post(
        f"/v1/callbacks/{body['id']}/book", json={"slot_id": _z(later)}, headers=auth
    )
    assert moved.status_code == 200
    rows = await read_notifications(body["id"])
    assert {(n.kind, n.status) for n in rows if n.kind == "reminder"} == {
        ("reminder", "cancelled"),
        ("reminder", "queued"),
    }
    assert {n.channel for n in rows if n.kind == "rebooked"} == {"sms", "email"}

    # The reminder goes out when due (made due now here), once.
    async with sessions() as session:
        await session.execute(
            update(Notification)
            .where(Notification.kind == "reminder", Notification.status == "queued")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    await run_worker()
    rows = await read_notifications(body["id"])
    assert sorted((n.kind, n.status) for n in rows if n.kind == "reminder") == [
        ("reminder", "cancelled"),
        ("reminder", "cancelled"),
        ("reminder", "sent"),
        ("reminder", "sent"),
    ]


async def test_a_reminder_for_a_callback_no_longer_booked_is_not_sent(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    read_notifications: ReadNotificationsFn,
    sessions: async_sessionmaker[AsyncSession],
    run_worker: RunWorker,
) -> None:
    await client.put("/v1/capacity", json=plan_body(), headers=admin)
    created = (
        await client.post(
            "/v1/callbacks",
            json=callback_body(preferred={"slot_id": _z(_tomorrow_at(9))}, email=None),
            headers=auth,
        )
    ).json()
    await confirm_owed()
    # An agent takes it early (the slot has not started); the reminder is now pointless.
    async with sessions() as session:
        await session.execute(
            update(Notification)
            .where(Notification.kind == "reminder")
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        from services.callback.models import Callback

        await session.execute(
            update(Callback)
            .where(Callback.id == created["id"])
            .values(
                status="in_progress",
                agent_id="anna",
                lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
        await session.commit()
    await run_worker()
    (reminder,) = [n for n in await read_notifications(created["id"]) if n.kind == "reminder"]
    assert reminder.status == "cancelled"
