"""Booking under contention: 1,000 concurrent attempts into 20 slots of capacity 5.

Run: `.venv/bin/python bench/booking.py [--attempts 1000] [--out FILE]` (PostgreSQL from
RINGBACK_BENCH_DATABASE_URL, default the local server). Creates a scratch database, migrates
it, books through the service function (`booking.book`, one session and transaction per
attempt, as the API does), checks the booking invariant in the database, prints the figures
and writes `bench/results/booking.json` (or `--out`). Notifications the bookings would send are
not enqueued (no Redis): this measures the database.

Then `one_at_a_time`: `--one-at-a-time` more attempts, each alone, at a slot already full
(every one refused), and as many bookings into slots with room (every one succeeds): this
process's CPU per refusal and per booking, without the concurrency's lock waits and batching
of the event loop's wake-ups (the two paths cost differently: a refusal is answered from the
first look, a booking then locks and writes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import admin_url, results_path
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.callback import booking, queues
from services.callback.capacity import CapacityPlan, iter_slots, slot_id
from services.callback.models import Callback, SlotBooking
from services.callback.settings import CallbackSettings
from services.cli.migrate import upgrade
from shared import eventloop
from shared.db import asyncpg_dsn, commit, create_engine, create_session_factory
from shared.errors import Conflict
from shared.ids import new_id

ATTEMPTS = 1000
SLOTS = 20
CAPACITY = 5


class NoQueue:
    """The bookings' notices are rows in the database; nothing is enqueued in this benchmark."""

    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int:
        return 0

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        return False

    async def enqueue_booking(self, callback_id: str) -> bool:
        return False


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def run(database_url: str, attempts: int = ATTEMPTS, alone: int = 0) -> dict[str, Any]:
    settings = CallbackSettings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        db_pool_size=20,
        db_max_overflow=0,
        db_command_timeout_seconds=60,
        outbox_relay=False,
    )
    engine = create_engine(settings, application_name="ringback.bench.booking")
    sessions = create_session_factory(engine)
    plan = CapacityPlan.model_validate(
        {
            "business_hours": {
                d: [{"start": "00:00", "end": "24:00"}]
                for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
            "default_agents": 1,
            "callbacks_per_agent_per_slot": CAPACITY,
        }
    )
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    day = list(iter_slots(plan, start, start + timedelta(days=1)))
    slots = day[:SLOTS]
    # Slots for the bookings made one at a time: one each, after the contended ones.
    spare = day[SLOTS : SLOTS + alone]
    if len(spare) < alone:
        raise SystemExit(f"--one-at-a-time at most {len(day) - SLOTS}")
    now = datetime.now(UTC)
    async with sessions() as session:
        await queues.put_default_plan(session=session, settings=settings, plan=plan)
        session.add_all(
            Callback(
                id=new_id(),
                phone=f"+3584070{i:05d}",
                language="fi",
                status="pending",
                source="missed_call",
                channel="phone",
                priority=0,
                first_contact_at=now,
                due_at=now,
                sla_deadline=now + timedelta(hours=2),
                contact_count=1,
                consent_sms=True,
                consent_email=True,
                asap=True,
                booking_seq=0,
                attempt_count=0,
                created_at=now,
                updated_at=now,
            )
            for i in range(attempts + 2 * alone)
        )
        await session.commit()
        ids = list((await session.scalars(select(Callback.id))).all())

    queue = NoQueue()

    async def attempt(callback_id: str, slot_ref: str) -> str:
        async with sessions() as session:
            try:
                await booking.book(
                    session=session,
                    settings=settings,
                    callback_id=callback_id,
                    slot_ref_in=slot_ref,
                    queue=queue,
                )
                await commit(session)
            except Conflict:
                await session.rollback()
                return "full"
        return "booked"

    contended, refused_alone, booked_alone = (
        ids[:attempts],
        ids[attempts : attempts + alone],
        ids[attempts + alone :],
    )
    began, cpu_began = time.perf_counter(), time.process_time()
    outcomes = await asyncio.gather(
        *(attempt(cid, slot_id(slots[i % SLOTS].start)) for i, cid in enumerate(contended))
    )
    elapsed = time.perf_counter() - began
    # This process runs the service's code for every attempt: its CPU is steadier across runs
    # than the rate, which the database's lock waits and the machine's neighbours move.
    cpu = time.process_time() - cpu_began

    one_at_a_time: dict[str, Any] = {"attempts": alone}
    if alone:
        full = slot_id(slots[0].start)  # filled by the contended attempts
        cpu_began = time.process_time()
        refused = [await attempt(cid, full) for cid in refused_alone]
        refusal_cpu = time.process_time() - cpu_began
        cpu_began = time.process_time()
        booked = [
            await attempt(cid, slot_id(slot.start))
            for cid, slot in zip(booked_alone, spare, strict=True)
        ]
        booking_cpu = time.process_time() - cpu_began
        one_at_a_time.update(
            refused=refused.count("full"),
            booked=booked.count("booked"),
            service_cpu_ms_per_refusal=round(1000 * refusal_cpu / alone, 3),
            service_cpu_ms_per_booking=round(1000 * booking_cpu / alone, 3),
        )

    async with sessions() as session:
        seats = dict(
            (await session.execute(select(SlotBooking.slot_start, SlotBooking.booked))).all()
        )
        held = dict(
            (
                await session.execute(
                    select(Callback.slot_start, func.count())
                    .where(Callback.status == "scheduled")
                    .group_by(Callback.slot_start)
                )
            ).all()
        )
    await engine.dispose()
    successes = outcomes.count("booked")
    overbooked = sum(max(0, n - CAPACITY) for n in seats.values()) + sum(
        max(0, n - CAPACITY) for n in held.values()
    )
    return {
        "attempts": attempts,
        "slots": SLOTS,
        "capacity_per_slot": CAPACITY,
        "successes": successes,
        "refused_full": outcomes.count("full"),
        "overbookings": overbooked,
        "seats_match_callbacks": seats == held,
        "seconds": round(elapsed, 3),
        "attempts_per_second": round(attempts / elapsed, 1),
        "bookings_per_second": round(successes / elapsed, 1),
        "service_cpu_ms_per_attempt": round(1000 * cpu / attempts, 3),
        "db_pool": settings.db_pool_size + settings.db_max_overflow,
        "one_at_a_time": one_at_a_time,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--attempts", type=int, default=ATTEMPTS)
    parser.add_argument("--one-at-a-time", type=int, default=50, dest="alone")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    admin = admin_url()
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, ["callback"])
        result = eventloop.run(run(url, args.attempts, args.alone))
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    out = results_path("booking", args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
