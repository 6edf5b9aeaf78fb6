"""What one statement costs the calling process: SQLAlchemy's execution against `shared.fast_sql`
and asyncpg alone, for the same statement on the same connection.

Run: `.venv/bin/python bench/statement_cost.py [--transactions 600] [--rounds 3] [--out FILE]`
(PostgreSQL from RINGBACK_BENCH_DATABASE_URL, default the local server; no tables needed). Each
way runs transactions of 5 statements (a select of a bound text and a literal) and a COMMIT,
one after the other on one pooled connection, the ways alternated for `--rounds` rounds.
Figures: this process's CPU microseconds per transaction (`time.process_time`, kernel time
included, as the end-to-end bench counts it) for each way and round, and per statement the
difference between SQLAlchemy's and each faster way. Not part of `make bench`: it explains
where a hot path's CPU goes, and why `shared.fast_sql` exists.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common import admin_url, results_path, write_results
from sqlalchemy import String, bindparam, literal, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from shared import fast_sql
from shared.db import async_url, create_session_factory
from shared.eventloop import run

STATEMENTS = 5


async def measure(url: str, transactions: int, rounds: int) -> dict[str, Any]:
    engine = create_async_engine(async_url(url), pool_size=1, max_overflow=0)
    sessions = create_session_factory(engine)
    statement = select(literal(1).label("a"), bindparam("x", type_=String).label("b"))
    fast = fast_sql.Statement.of(statement)

    async def by_sqlalchemy(session: AsyncSession, value: str) -> None:
        (await session.execute(statement, {"x": value})).all()

    async def by_fast_sql(session: AsyncSession, value: str) -> None:
        await fast_sql.fetch(session, fast, {"x": value})

    async def by_asyncpg(session: AsyncSession, value: str) -> None:
        # The floor: the driver's call alone, the connection asked for outside the count.
        await session.info["driver"].fetch(fast.text, *fast.args({"x": value}))

    ways: dict[str, Callable[[AsyncSession, str], Awaitable[None]]] = {
        "sqlalchemy": by_sqlalchemy,
        "fast_sql": by_fast_sql,
        "asyncpg": by_asyncpg,
    }

    async def transaction(way: Callable[[AsyncSession, str], Awaitable[None]]) -> None:
        async with sessions() as session:
            if way is by_asyncpg:
                connection = await session.connection()
                raw = await connection.get_raw_connection()
                session.info["driver"] = raw.driver_connection
                await fast_sql.fetch(session, fast, {"x": "begin"})  # the BEGIN, as the others
                for i in range(STATEMENTS - 1):
                    await way(session, str(i))
            else:
                for i in range(STATEMENTS):
                    await way(session, str(i))
            await session.commit()

    per_round: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            for _ in range(transactions // 5):  # warm-up: statement caches, pool
                await transaction(way)
            began = time.process_time()
            for _ in range(transactions):
                await transaction(way)
            per_round[name].append((time.process_time() - began) / transactions * 1e6)
    await engine.dispose()
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    return {
        "transactions_per_round": transactions,
        "statements_per_transaction": STATEMENTS,
        "cpu_us_per_transaction": {k: [round(v, 1) for v in vs] for k, vs in per_round.items()},
        "saved_us_per_statement": {
            "fast_sql": round((medians["sqlalchemy"] - medians["fast_sql"]) / STATEMENTS, 1),
            # the asyncpg way runs one of its five statements through fast_sql (the BEGIN)
            "asyncpg": round((medians["sqlalchemy"] - medians["asyncpg"]) / (STATEMENTS - 1), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transactions", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = run(measure(admin_url(), args.transactions, args.rounds))
    write_results(results_path("statement_cost", args.out), result)


if __name__ == "__main__":
    main()
