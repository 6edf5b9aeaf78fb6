"""Promises at risk (§14): the every-minute job over 10,000 open callbacks in one queue.

Run: `.venv/bin/python bench/at_risk.py [--callbacks 10000] [--runs 5] [--out FILE]`
(PostgreSQL from RINGBACK_BENCH_DATABASE_URL, default the local server). Creates a scratch
database, migrates it, sets up one queue open around the clock with 40 agents planned, 25
available agents on the roster (5 of them shared with another queue), and the callbacks: 6 %
an overdue backlog promised within the hour, the rest due over the next two days and promised
2 hours after (10 % of those in booked slots); priorities 0/1/5. Then it runs
`promises.check_queue` (one session and transaction, as the job does) once from cold, where
the promises the agents cannot reach in time are newly at risk and announced, then `--runs`
more times in steady state, and then the supervisor's `now_view` (with the bisection for "M
more agents"). Writes the process CPU seconds and wall seconds of each to
`bench/results/at_risk.json` (or `--out`). The target: under 1 s of CPU per run of the job.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import results_path, scratch_database, write_results
from sqlalchemy import func, insert, select

from services.callback import promises
from services.callback.models import Agent, Callback, CallbackOutbox, Queue, SlotBooking
from services.callback.settings import CallbackSettings
from shared import eventloop
from shared.db import commit, create_engine, create_session_factory
from shared.ids import new_id
from shared.logging import configure_logging

KEY = "billing"
PLANNED = 40
AVAILABLE = 25
SHARED = 5
# The share of the callbacks that is an overdue backlog (the rest fall due over two days).
BACKLOG_SHARE = 0.06


def _config() -> dict[str, Any]:
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return {
        "name": KEY,
        "timezone": "Europe/Helsinki",
        "capacity": {
            "timezone": "Europe/Helsinki",
            "slot_minutes": 15,
            "callbacks_per_agent_per_slot": 1,
            "business_hours": {day: [{"start": "00:00", "end": "24:00"}] for day in days},
            "agents": {},
            "default_agents": PLANNED,
            "date_overrides": {},
            "closed_dates": [],
        },
    }


async def _populate(sessions: Any, callbacks: int, now: datetime, rng: random.Random) -> None:
    async with sessions() as session:
        for key in (KEY, "sales"):
            config = _config() if key == KEY else {"name": key}
            await session.execute(
                insert(Queue),
                [{"key": key, "name": key, "timezone": "Europe/Helsinki", "config": config,
                  "created_at": now, "updated_at": now}],
            )  # fmt: skip
        await session.execute(
            insert(Agent),
            [
                {
                    "id": f"agent-{i}", "name": f"Agent {i}",
                    "queues": [KEY, "sales"] if i < SHARED else [KEY], "languages": [],
                    "presence": "available", "created_at": now, "updated_at": now,
                }
                for i in range(AVAILABLE)
            ],
        )  # fmt: skip
        slot_starts = sorted(
            {now.replace(minute=0, second=0, microsecond=0) + timedelta(minutes=15 * k)
             for k in range(4, 48 * 4)}
        )  # fmt: skip
        await session.execute(
            insert(SlotBooking),
            [{"queue": KEY, "slot_start": s, "slot_end": s + timedelta(minutes=15),
              "capacity": 10_000, "booked": 0, "updated_at": now} for s in slot_starts],
        )  # fmt: skip
        rows = []
        for i in range(callbacks):
            backlog = i < callbacks * BACKLOG_SHARE
            if backlog:
                # This morning's backlog: due in the last half hour, promised within the hour.
                due = now - timedelta(minutes=rng.uniform(0, 30))
                deadline = now + timedelta(minutes=rng.uniform(30, 60))
            else:
                due = now + timedelta(minutes=rng.uniform(0, 48 * 60))
                deadline = due + timedelta(hours=2)
            booked = not backlog and rng.random() < 0.1
            slot = rng.choice(slot_starts) if booked else None
            rows.append(
                {
                    "id": new_id(), "phone": f"+35840{i:07d}", "queue": KEY, "language": "fi",
                    "status": "scheduled" if booked else "pending", "source": "missed_call",
                    "channel": "phone", "priority": rng.choice((0, 0, 0, 1, 5)),
                    "first_contact_at": due, "due_at": slot or due, "sla_deadline": deadline,
                    "asap": not booked, "slot_start": slot,
                    "slot_end": slot + timedelta(minutes=15) if slot else None,
                    "contact_count": 1, "consent_sms": True, "consent_email": True,
                    "booking_seq": 0, "attempt_count": 0, "created_at": now, "updated_at": now,
                }
            )  # fmt: skip
        for start in range(0, len(rows), 2000):
            await session.execute(insert(Callback), rows[start : start + 2000])
        await session.commit()


async def _timed(work: Any) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = await work()
    return result, time.process_time() - cpu, time.perf_counter() - wall


async def run(url: str, callbacks: int, runs: int) -> dict[str, Any]:
    settings = CallbackSettings(database_url=url)
    engine = create_engine(settings, application_name="ringback.bench.at_risk")
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    try:
        await _populate(sessions, callbacks, now, random.Random(20))

        async def check(moment: datetime) -> promises.Checked:
            async with sessions() as session:
                found = await promises.check_queue(
                    session=session, settings=settings, key=KEY, now=moment
                )
                await commit(session)
                return found

        first, first_cpu, first_wall = await _timed(lambda: check(now))
        steady = [await _timed(lambda: check(now + timedelta(seconds=1))) for _ in range(runs)]

        async def view() -> Any:
            async with sessions() as session:
                return await promises.now_view(session=session, settings=settings, key=KEY, now=now)

        outlook, view_cpu, view_wall = await _timed(view)
        async with sessions() as session:
            announced = await session.scalar(select(func.count()).select_from(CallbackOutbox))
    finally:
        await engine.dispose()
    return {
        "callbacks": callbacks,
        "planned_agents": PLANNED,
        "available_agents": AVAILABLE,
        "shared_agents": SHARED,
        "first_run": {
            "cpu_seconds": round(first_cpu, 3),
            "wall_seconds": round(first_wall, 3),
            "at_risk": first.at_risk,
            "newly_announced": len(first.newly),
            "events_written": announced,
        },
        "steady_state": {
            "runs": runs,
            "cpu_seconds_median": round(statistics.median(s[1] for s in steady), 3),
            "cpu_seconds_max": round(max(s[1] for s in steady), 3),
            "wall_seconds_median": round(statistics.median(s[2] for s in steady), 3),
            "newly_announced": sum(len(s[0].newly) for s in steady),
        },
        "now_view": {
            "cpu_seconds": round(view_cpu, 3),
            "wall_seconds": round(view_wall, 3),
            "at_risk_next_2_hours": outlook.at_risk,
            "more_agents": outlook.more_agents,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callbacks", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True, process="bench.at_risk")
    with scratch_database(["callback"]) as url:
        result = eventloop.run(run(url, args.callbacks, args.runs))
    path = results_path("at_risk", args.out)
    write_results(path, result)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
