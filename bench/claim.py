"""Claims with routing: 10,000 open callbacks over 20 queues, 200 agents claiming at once.

Run: `.venv/bin/python bench/claim.py [--callbacks 10000] [--claims 2000] [--out FILE]`
(PostgreSQL from RINGBACK_BENCH_DATABASE_URL, default the local server). Creates a scratch
database, migrates it, sets up 20 queues (languages fi/sv/en), 200 available agents (each in
2 queues, speaking 1-2 languages) and the callbacks (due, mixed languages and priorities),
then claims through the service function (`agents.claim_next`, one session and transaction
per claim, as the API does) from 20 concurrent claimers. Writes the per-claim latency
(p50/p99), claims/s, double hand-outs (must be 0), wrong-queue hand-outs (must be 0), and the
claim statement's `EXPLAIN (ANALYZE)` plan to `bench/results/claim.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from common import admin_url, percentiles, results_path
from sqlalchemy import insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from services.callback import agents, repository, roster
from services.callback.models import Agent, Callback, Queue
from services.callback.settings import CallbackSettings
from services.cli.migrate import upgrade
from shared import eventloop
from shared.db import asyncpg_dsn, commit, create_engine, create_session_factory
from shared.ids import new_id
from shared.logging import configure_logging
from shared.vocabulary import OPEN_STATUSES

CALLBACKS = 10_000
QUEUES = 20
AGENTS = 200
CLAIMS = 2_000
CLAIMERS = 20
LANGUAGES = ("fi", "sv", "en")


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _populate(sessions: Any, callbacks: int, rng: random.Random) -> dict[str, set[str]]:
    now = datetime.now(UTC)
    keys = [f"q{i:02d}" for i in range(QUEUES)]
    agent_queues: dict[str, set[str]] = {}
    async with sessions() as session:
        await session.execute(
            insert(Queue),
            [
                {
                    "key": k,
                    "name": k,
                    "timezone": "Europe/Helsinki",
                    "language_wait_minutes": 15,
                    "config": {"name": k, "languages": list(LANGUAGES)},
                    "created_at": now,
                    "updated_at": now,
                }
                for k in keys
            ],
        )
        rows = []
        for i in range(AGENTS):
            mine = {keys[i % QUEUES], keys[(i * 7 + 3) % QUEUES]}
            agent_queues[f"agent-{i}"] = mine
            rows.append(
                {
                    "id": f"agent-{i}",
                    "name": f"Agent {i}",
                    "queues": sorted(mine),
                    "languages": sorted(rng.sample(LANGUAGES, rng.choice((1, 2)))),
                    "presence": "available",
                    "created_at": now,
                    "updated_at": now,
                }
            )
        await session.execute(insert(Agent), rows)
        batch = []
        for i in range(callbacks):
            due = now - timedelta(minutes=rng.randint(0, 60))
            batch.append(
                {
                    "id": new_id(),
                    "phone": f"+35840{i:07d}",
                    "queue": keys[i % QUEUES],
                    "language": rng.choice(LANGUAGES),
                    "language_known": rng.random() > 0.1,
                    "status": "pending",
                    "source": "missed_call",
                    "channel": "phone",
                    "priority": rng.choice((0, 0, 0, 1, 5)),
                    "first_contact_at": due,
                    "due_at": due,
                    "sla_deadline": due + timedelta(hours=2),
                    "contact_count": 1,
                    "consent_sms": True,
                    "consent_email": True,
                    "asap": True,
                    "booking_seq": 0,
                    "attempt_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if len(batch) == 2000:
                await session.execute(insert(Callback), batch)
                batch = []
        if batch:
            await session.execute(insert(Callback), batch)
        await session.commit()
        await session.execute(text("ANALYZE callback.callbacks"))
        await session.commit()
    return agent_queues


async def _explain(sessions: Any, settings: CallbackSettings, agent_id: str) -> list[str]:
    """The plan of the claim statement for one agent, as PostgreSQL runs it."""
    now = datetime.now(UTC)
    async with sessions() as session:
        route = await repository_route(session, settings, agent_id, now)
        statement = (
            select(Callback)
            .where(Callback.status.in_(OPEN_STATUSES), repository._claimable(now), route)
            .order_by(*repository._CLAIM_ORDER)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        # SQLAlchemy declares the re-exported dialect class without types.
        dialect: Any = postgresql.dialect()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        plan = await session.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}"))
        lines = [str(row[0]) for row in plan]
        await session.rollback()
    return lines


async def repository_route(
    session: Any, settings: CallbackSettings, agent_id: str, now: datetime
) -> Any:
    route = await roster.route_for(session, agent_id)
    return repository.routed_to(
        agent_id=agent_id,
        queues=route.queues,
        languages=route.languages,
        language_wait_minutes=settings.language_wait_minutes,
        now=now,
    )


async def run(database_url: str, callbacks: int, claims: int) -> dict[str, Any]:
    settings = CallbackSettings(
        database_url=database_url,
        redis_url="redis://127.0.0.1:6379/0",
        db_pool_size=CLAIMERS,
        db_max_overflow=0,
        db_command_timeout_seconds=60,
        outbox_relay=False,
    )
    engine = create_engine(settings, application_name="ringback.bench.claim")
    sessions = create_session_factory(engine)
    rng = random.Random(7)
    agent_queues = await _populate(sessions, callbacks, rng)
    plan = await _explain(sessions, settings, "agent-0")
    executed = [line for line in plan if line.startswith("Execution Time:")]

    handed: list[tuple[str, str, str]] = []
    latencies: list[float] = []
    empty = 0
    names = sorted(agent_queues)
    work = iter(range(claims))

    async def claimer(n: int) -> None:
        nonlocal empty
        for i in work:
            agent_id = names[(i * 13 + n) % len(names)]
            began = time.perf_counter()
            async with sessions() as session:
                callback = await agents.claim_next(
                    session=session, settings=settings, agent_id=agent_id
                )
                got = (callback.id, callback.queue) if callback is not None else None
                await commit(session)
            latencies.append(time.perf_counter() - began)
            if got is None:
                empty += 1
            else:
                handed.append((got[0], got[1], agent_id))

    began = time.perf_counter()
    await asyncio.gather(*(claimer(n) for n in range(CLAIMERS)))
    elapsed = time.perf_counter() - began
    await engine.dispose()
    ids = [h[0] for h in handed]
    return {
        "callbacks": callbacks,
        "queues": QUEUES,
        "agents": AGENTS,
        "claims": claims,
        "claimers": CLAIMERS,
        "handed_out": len(handed),
        "nothing_due": empty,
        "double_handouts": len(ids) - len(set(ids)),
        "wrong_queue": sum(1 for _, queue, agent in handed if queue not in agent_queues[agent]),
        "claims_per_second": round(claims / elapsed, 1),
        "latency": percentiles(latencies),
        "statement_ms": float(executed[0].split()[2]) if executed else None,
        "explain": plan,
    }


def main() -> None:
    # A log line per claim would measure the terminal, not the claim.
    configure_logging(level="WARNING", json=True, process="bench.claim")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--callbacks", type=int, default=CALLBACKS)
    parser.add_argument("--claims", type=int, default=CLAIMS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    admin = admin_url()
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, ["callback"])
        result = eventloop.run(run(url, args.callbacks, args.claims))
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    out = results_path("claim", args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        if key == "explain":
            print("explain:\n  " + "\n  ".join(value))
        else:
            print(f"{key:>18}: {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
