"""History benchmark: load N events, then time timeline pages and batch ingest.

    .venv/bin/python bench/history.py --events 1000000

Loads N events (default 10 million) with COPY into a database of its own (created if
missing and kept for `--skip-load` runs; `--database-url`, or
`RINGBACK_BENCH_HISTORY_DATABASE_URL`, default `rb_bench_history` on 127.0.0.1; its history
tables are emptied first), over `--customers` customers (default N / 20) each with a phone
number, some with long histories (the distribution is skewed like real contact logs).
Then, with the history app served over real HTTP on loopback:

- the first timeline page (50 events) of random customers through the API, p50/p99;
- the same keyset query raw through asyncpg, p50/p99;
- batch ingest: batches of 500 events through `POST /v1/events:batch`, events/s.

Figures go to bench/results/history.json and standard output. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.history.app import create_app  # noqa: E402
from services.history.settings import HistorySettings  # noqa: E402
from shared.apikeys import create_key  # noqa: E402
from shared.db import asyncpg_dsn, create_engine, create_session_factory  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from shared.migrate import upgrade  # noqa: E402

CHANNELS = ["phone", "phone", "phone", "sms", "email", "web", "chat"]
TYPES = {
    "phone": ("inbound", "missed_call"),
    "sms": ("outbound", "notification_sent"),
    "email": ("inbound", "contact_request"),
    "web": ("inbound", "contact_request"),
    "chat": ("inbound", "contact_request"),
}
EVENT_COLUMNS = [
    "id",
    "customer_id",
    "occurred_at",
    "received_at",
    "channel",
    "direction",
    "type",
    "subject_kind",
    "subject_id",
    "actor_kind",
    "actor_id",
    "summary",
    "data",
]
CHUNK = 200_000


def _phone(n: int) -> str:
    return f"+35840{n:07d}"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "n": len(ordered),
    }


async def ensure_database(url: str) -> None:
    dsn = asyncpg_dsn(url)
    name = dsn.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await asyncio.to_thread(upgrade, url, ["auth", "history"])


async def load(url: str, *, events: int, customers: int, seed: int) -> dict[str, Any]:
    """COPY customers, identities and events; rebuild the activity roll-up; ANALYZE."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    started = time.perf_counter()
    try:
        await conn.execute(
            "TRUNCATE history.customer_activity, history.events, history.identities,"
            " history.erasures, history.outbox, history.customers RESTART IDENTITY CASCADE"
        )
        now = datetime.now(UTC)
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(customers)]
        created = now - timedelta(days=720)
        await conn.copy_records_to_table(
            "customers",
            schema_name="history",
            columns=["id", "created_at", "updated_at"],
            records=[(cid, created, created) for cid in ids],
        )
        await conn.copy_records_to_table(
            "identities",
            schema_name="history",
            columns=["kind", "value", "customer_id", "created_at"],
            records=[("phone", _phone(i), cid, created) for i, cid in enumerate(ids)],
        )
        # Skewed: a few customers call a lot (Pareto weights), most a handful of times.
        weights = [rng.paretovariate(1.2) for _ in ids]
        copied = 0
        span = 700 * 86400
        while copied < events:
            size = min(CHUNK, events - copied)
            owners = rng.choices(ids, weights=weights, k=size)
            rows = []
            for owner in owners:
                channel = rng.choice(CHANNELS)
                direction, type_ = TYPES[channel]
                at = now - timedelta(seconds=rng.randrange(span))
                rows.append(
                    (
                        uuid.uuid4().hex,
                        owner,
                        at,
                        at,
                        channel,
                        direction,
                        type_,
                        None,
                        None,
                        "system",
                        None,
                        "Missed call" if type_ == "missed_call" else "Contact",
                        '{"queue": "billing"}',
                    )
                )
            await conn.copy_records_to_table(
                "events", schema_name="history", columns=EVENT_COLUMNS, records=rows
            )
            copied += size
            print(f"  loaded {copied:,} events", flush=True)
        loaded = time.perf_counter() - started
        await conn.execute(
            "INSERT INTO history.customer_activity"
            " (customer_id, channel, direction, type, count, last_occurred_at)"
            " SELECT customer_id, channel, direction, type, count(*), max(occurred_at)"
            " FROM history.events GROUP BY 1, 2, 3, 4"
        )
        await conn.execute("VACUUM ANALYZE history.events")
        await conn.execute("ANALYZE history.customers")
        await conn.execute("ANALYZE history.customer_activity")
        size_bytes = await conn.fetchval("SELECT pg_total_relation_size('history.events')")
    finally:
        await conn.close()
    return {
        "events": events,
        "customers": customers,
        "copy_seconds": round(loaded, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "events_table_bytes": size_bytes,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(url: str, *, requests: int, batches: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    settings = HistorySettings(
        database_url=url,
        redis_url=os.environ.get("RINGBACK_REDIS_URL", "redis://127.0.0.1:6379/15"),
        internal_api_key="rb_internal0000_" + secrets.token_urlsafe(32),
        environment="test",
        log_level="WARNING",
        history_erasure_relay_enabled=False,
        history_purge_enabled=False,
    )
    engine = create_engine(settings, application_name="ringback.bench", service="history")
    async with create_session_factory(engine)() as session:
        _, key = await create_key(session, name="bench", scopes=["history:read", "history:write"])
        await session.commit()
    await engine.dispose()
    headers = {"Authorization": f"Bearer {key}"}

    conn = await asyncpg.connect(asyncpg_dsn(url))
    customers = [
        r["id"] for r in await conn.fetch("SELECT id FROM history.customers ORDER BY random()")
    ]
    phones = await conn.fetchval("SELECT count(*) FROM history.identities")
    sample = rng.sample(customers, min(requests, len(customers)))

    raw_sql = (
        "SELECT * FROM history.events WHERE customer_id = $1"
        " ORDER BY occurred_at DESC, seq DESC LIMIT 51"
    )
    stmt = await conn.prepare(raw_sql)
    raw: list[float] = []
    for cid in sample:
        t = time.perf_counter()
        await stmt.fetch(cid)
        raw.append(time.perf_counter() - t)
    plan = await conn.fetchval(f"EXPLAIN (FORMAT TEXT) {raw_sql.replace('$1', repr(sample[0]))}")
    plan_rows = await conn.fetch(
        f"EXPLAIN (ANALYZE, BUFFERS) {raw_sql.replace('$1', repr(sample[0]))}"
    )
    await conn.close()

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            for cid in sample[:20]:  # warm the pool and the key cache
                await http.get(f"/v1/customers/{cid}/timeline")
            api: list[float] = []
            for cid in sample:
                t = time.perf_counter()
                response = await http.get(f"/v1/customers/{cid}/timeline")
                api.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            ingest: list[float] = []
            start = time.perf_counter()
            for _ in range(batches):
                body = {
                    "events": [
                        {
                            "id": uuid.uuid4().hex,
                            "occurred_at": datetime.now(UTC).isoformat(),
                            "channel": "phone",
                            "direction": "inbound",
                            "type": "missed_call",
                            # Mostly known numbers, some new ones.
                            "customer": {"phone": _phone(rng.randrange(int(phones * 1.1) + 1))},
                            "summary": "Missed call",
                            "data": {"queue": "billing"},
                        }
                        for _ in range(500)
                    ]
                }
                t = time.perf_counter()
                response = await http.post("/v1/events:batch", json=body)
                ingest.append(time.perf_counter() - t)
                assert response.status_code == 200, response.text
            elapsed = time.perf_counter() - start
    finally:
        server.should_exit = True
        await task
    return {
        "timeline_first_page_api": _percentiles(api),
        "timeline_first_page_raw_asyncpg": _percentiles(raw),
        "batch_ingest": {
            "batches": batches,
            "batch_size": 500,
            "events_per_second": round(batches * 500 / elapsed, 1),
            "batch_latency": _percentiles(ingest),
        },
        "plan": plan,
        "plan_analyze": "\n".join(r[0] for r in plan_rows),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "RINGBACK_BENCH_HISTORY_DATABASE_URL",
            "postgresql://postgres@127.0.0.1:5432/rb_bench_history",
        ),
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "history.json"))
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True, process="bench")
    customers = args.customers or max(1, args.events // 20)

    await ensure_database(args.database_url)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgres": None,
    }
    conn = await asyncpg.connect(asyncpg_dsn(args.database_url))
    result["postgres"] = await conn.fetchval("SHOW server_version")
    await conn.close()
    if not args.skip_load:
        print(f"loading {args.events:,} events over {customers:,} customers", flush=True)
        result["load"] = await load(
            args.database_url, events=args.events, customers=customers, seed=args.seed
        )
    result.update(
        await measure(
            args.database_url, requests=args.requests, batches=args.batches, seed=args.seed
        )
    )
    out = Path(args.out)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if not k.startswith("plan")}
    print(json.dumps(summary, indent=2))
    print(result["plan_analyze"])


if __name__ == "__main__":
    asyncio.run(main())
