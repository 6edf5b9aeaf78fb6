"""What the ORM's load and flush of a callback cost the calling process, against
`shared.fast_load` and `shared.fast_update` doing the same on the same connection.

Run: `.venv/bin/python bench/orm_cost.py [--transactions 1000] [--rounds 3] [--out FILE]`
(PostgreSQL from RINGBACK_BENCH_DATABASE_URL, default the local server). On a scratch database
with the callback schema and one callback in a queue, each way runs transactions one after the
other on one pooled connection, the ways alternated for `--rounds` rounds:

- `lock`: the callback locked with its queue's row (the booking job's and every booking
  attempt's first statement), by the ORM's `session.execute` or by `fast_load`, then ROLLBACK;
- `lock_and_write`: the same lock, three columns changed as a booking changes them, and the
  row written (by the ORM's flush, or by `fast_update` and then a flush that finds nothing),
  then ROLLBACK. Both lock with `fast_load`, so the difference is the write's alone.

Figures: this process's CPU microseconds per transaction (`time.process_time`, kernel time
included, as the end-to-end bench counts it) for each way and round, and the medians'
differences. Alternating inside one process keeps a noisy machine's drift out of the
comparison, which the end-to-end bench's ±15% between runs does not. Not part of `make bench`:
it says what `shared.fast_load` and `shared.fast_update` buy, statement by statement.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import admin_url, results_path, write_results
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import repository
from services.callback.models import Callback, Queue
from services.callback.settings import CallbackSettings
from services.cli.migrate import upgrade
from shared import eventloop, fast_load, fast_update
from shared.db import asyncpg_dsn, create_engine, create_session_factory

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PARAMS = {"callback_id": "cb-bench"}


async def measure(url: str, transactions: int, rounds: int) -> dict[str, Any]:
    settings = CallbackSettings(
        database_url=url,
        redis_url="redis://127.0.0.1:6379/0",
        db_pool_size=1,
        db_max_overflow=0,
        outbox_relay=False,
    )
    engine = create_engine(settings, application_name="ringback.bench.orm_cost")
    sessions = create_session_factory(engine)
    async with sessions() as session:
        session.add(Queue(key="billing", name="Laskutus", config={}, created_at=NOW))
        session.add(
            Callback(
                id="cb-bench",
                phone="+358401234567",
                queue="billing",
                language="fi",
                source="missed_call",
                channel="phone",
                first_contact_at=NOW,
                due_at=NOW,
                sla_deadline=NOW + timedelta(hours=2),
                asap=True,
                booking_seq=0,
                attempt_count=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await session.commit()
    fast = fast_load.Load.of(repository._LOCK_WITH_QUEUE)

    async def lock_by_orm(session: AsyncSession) -> Callback:
        callback: Callback = (await session.execute(repository._LOCK_WITH_QUEUE, PARAMS)).one()[0]
        return callback

    async def lock_by_fast_load(session: AsyncSession) -> Callback:
        callback = (await fast.rows(session, PARAMS))[0][0]
        assert isinstance(callback, Callback)
        return callback

    def change(callback: Callback, i: int) -> None:
        callback.flag = None if i % 2 else "no_slot_before_deadline"
        callback.confirm_key = None if i % 2 else f"confirmation:{i}"
        callback.updated_at = NOW + timedelta(seconds=i)

    async def write_by_flush(session: AsyncSession, i: int) -> None:
        change(await lock_by_fast_load(session), i)
        await session.flush()

    async def write_by_fast_update(session: AsyncSession, i: int) -> None:
        callback = await lock_by_fast_load(session)
        change(callback, i)
        await fast_update.write_changes(session, callback)
        await session.flush()

    pairs: dict[str, dict[str, Callable[[AsyncSession, int], Awaitable[Any]]]] = {
        "lock": {
            "orm": lambda s, _i: lock_by_orm(s),
            "fast": lambda s, _i: lock_by_fast_load(s),
        },
        "lock_and_write": {"orm": write_by_flush, "fast": write_by_fast_update},
    }
    per_round: dict[str, dict[str, list[float]]] = {
        case: {way: [] for way in ways} for case, ways in pairs.items()
    }

    async def transaction(way: Callable[[AsyncSession, int], Awaitable[Any]], i: int) -> None:
        async with sessions() as session:
            await way(session, i)
            await session.rollback()

    for _ in range(rounds):
        for case, ways in pairs.items():
            for name, way in ways.items():
                for i in range(transactions // 5):  # warm-up: statement caches, pool
                    await transaction(way, i)
                began = time.process_time()
                for i in range(transactions):
                    await transaction(way, i)
                spent = (time.process_time() - began) / transactions * 1e6
                per_round[case][name].append(round(spent, 1))
    await engine.dispose()
    saved = {
        case: round(statistics.median(ways["orm"]) - statistics.median(ways["fast"]), 1)
        for case, ways in per_round.items()
    }
    return {
        "transactions_per_round": transactions,
        "cpu_us_per_transaction": per_round,
        "saved_us_per_transaction": saved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    admin = admin_url()
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, ["callback"])
        result = eventloop.run(measure(url, args.transactions, args.rounds))
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    write_results(results_path("orm_cost", args.out), result)


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
