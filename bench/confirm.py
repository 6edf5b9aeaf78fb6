"""The booking job alone: CPU and statements per confirmation, in the worker's own code.

Run: `.venv/bin/python bench/confirm.py [--jobs 1000] [--out FILE]` (PostgreSQL from
RINGBACK_BENCH_DATABASE_URL, default the local server). On a scratch database: the default
queue gets a plan open around the clock with room for every callback, `--jobs` new ASAP
callbacks are written as a create leaves them (owed their confirmation, `confirm_key` set,
SMS consent), and `creation.book_and_confirm` (the booking job's transaction, as
`tasks.run_book_and_confirm` runs it) is run for each, one after the other on one
connection. Each is booked into the earliest slot and gets its reminder and confirmation rows
and their events; nothing is enqueued or sent (no Redis, no gateway): this is the part of the
worker's CPU per call that the end-to-end bench cannot split from the rest.

Figures: `app_cpu_ms_per_job` (this process, `time.process_time`), `postgresql_cpu_ms_per_job`
(the connection's backend, from `/proc/<pid>/stat`), `statements_per_job` (as sent, `BEGIN` and
`COMMIT` included), after `--warmup` jobs that are not counted. CPU time is steadier than wall
time on a shared machine; compare two trees by running each in turn, more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import admin_url, results_path
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url

from services.callback import creation, queues
from services.callback.capacity import CapacityPlan
from services.callback.models import Callback, Notification
from services.callback.settings import CallbackSettings
from services.cli.migrate import upgrade
from shared import eventloop
from shared.db import asyncpg_dsn, commit, create_engine, create_session_factory
from shared.ids import new_id
from shared.logging import configure_logging

JOBS = 1000
WARMUP = 100


class NoQueue:
    """Sends and later jobs would go to arq; here the rows are the result."""

    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int:
        return 0

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        return False

    async def enqueue_booking(self, callback_id: str) -> bool:
        return False


def _reference_ms() -> float:
    """CPU milliseconds of a fixed piece of pure Python: how fast this machine is right now.

    A shared virtual machine's speed drifts by 15% between runs; the figures divided by this
    drift far less, so two trees are compared on `app_cpu_per_reference`."""
    began = time.process_time()
    total = 0
    for i in range(400_000):
        total += i * i % 7
    return (time.process_time() - began) * 1000


def _backend_cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def run(
    database_url: str, jobs: int = JOBS, warmup: int = WARMUP, *, email: bool = False
) -> dict[str, Any]:
    settings = CallbackSettings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        db_pool_size=1,
        db_max_overflow=0,
        outbox_relay=False,
        sms_quiet_hours="off",
    )
    engine = create_engine(settings, application_name="ringback.bench.confirm")
    sessions = create_session_factory(engine)
    total = jobs + warmup
    plan = CapacityPlan.model_validate(
        {
            "business_hours": {
                d: [{"start": "00:00", "end": "24:00"}]
                for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
            },
            # Room for every callback in the first slot: each job books the same one.
            "default_agents": total // 100 + 1,
            "callbacks_per_agent_per_slot": 100,
        }
    )
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
                sla_deadline=now + timedelta(hours=4),
                contact_count=1,
                consent_sms=True,
                # `--email`: a web form's contact who gave an address, confirmed both ways.
                email=f"customer{i}@example.fi" if email else None,
                consent_email=email,
                asap=True,
                booking_seq=0,
                attempt_count=0,
                confirm_key=f"confirm:{i}",
                created_at=now,
                updated_at=now,
            )
            for i in range(total)
        )
        await commit(session)
        ids = list((await session.scalars(select(Callback.id).order_by(Callback.id))).all())
        backend = int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)

    sent = 0

    def count(*_: Any) -> None:
        nonlocal sent
        sent += 1

    queue = NoQueue()
    results: dict[str, int] = {}

    async def one(callback_id: str) -> None:
        async with sessions() as session:
            result = await creation.book_and_confirm(
                session=session, settings=settings, callback_id=callback_id, queue=queue
            )
            await commit(session)
        results[result] = results.get(result, 0) + 1

    for callback_id in ids[:warmup]:
        await one(callback_id)
    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", count)
    event.listen(sync_engine, "begin", count)
    event.listen(sync_engine, "commit", count)
    reference = [_reference_ms()]
    cpu0, pg0, wall0 = time.process_time(), _backend_cpu_seconds(backend), time.perf_counter()
    for callback_id in ids[warmup:]:
        await one(callback_id)
    cpu1, pg1, wall1 = time.process_time(), _backend_cpu_seconds(backend), time.perf_counter()
    reference.append(_reference_ms())
    event.remove(sync_engine, "before_cursor_execute", count)
    event.remove(sync_engine, "begin", count)
    event.remove(sync_engine, "commit", count)

    async with sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Notification))
    await engine.dispose()
    return {
        "jobs": jobs,
        "email": email,
        "warmup": warmup,
        "results": results,
        "notification_rows": rows,
        "app_cpu_ms_per_job": round((cpu1 - cpu0) * 1000 / jobs, 3),
        "postgresql_cpu_ms_per_job": round((pg1 - pg0) * 1000 / jobs, 3),
        "statements_per_job": round(sent / jobs, 2),
        "reference_ms": round(sum(reference) / 2, 2),
        "app_cpu_per_reference": round((cpu1 - cpu0) * 1000 / jobs / (sum(reference) / 2), 4),
        "jobs_per_second_one_connection": round(jobs / (wall1 - wall0), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--email", action="store_true", help="callbacks with an email address: SMS and email"
    )
    args = parser.parse_args()
    # As the worker logs (JSON at INFO), the lines thrown away: their cost is the worker's too.
    level = os.environ.get("BENCH_LOG_LEVEL", "INFO")
    configure_logging(level=level, json=True, process="bench.confirm")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))
    admin = admin_url()
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, ["callback"])
        result = eventloop.run(run(url, args.jobs, args.warmup, email=args.email))
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    out = results_path("confirm", args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>34}: {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
