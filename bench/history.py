"""History benchmark: load N events, then time timeline pages and batch ingest.

    .venv/bin/python bench/history.py [--events 10000000] [--requests 1000] [--batches 40]
        [--skip-load] [--out FILE]

Loads N events (default 10 million) with COPY into a database of its own (created if
missing and kept for `--skip-load` runs; `--database-url`, or
`RINGBACK_BENCH_HISTORY_DATABASE_URL`, default `rb_bench_history` on the bench PostgreSQL;
its history tables are emptied first; `--drop` drops it at the end), over `--customers`
customers (default N / 20) each with a phone number, some with long histories
(Pareto-skewed, like real contact logs).

The rows are generated as they are sent (COPY text format from an async generator, a chunk at
a time: memory does not grow with N). The events table's indexes and constraints are dropped
for the COPY and built afterwards from the definitions of a freshly migrated scratch database,
and the script checks that every index and constraint of the history schema then matches
what the migrations create (`schema_matches_migrations`), so the timeline is read through the
real indexes. The events table is partitioned by month: the months of the generated span (and
the months ahead the service keeps) are created before the COPY, so no row lands in the
default partition; the check compares the partitioned table's own definitions, not its
partitions' (which differ by month anyway).

Then, with the history app served over real HTTP on loopback (uvicorn in this process):

- the first timeline page (50 events) of random customers through the API, p50/p99;
- the same keyset query raw through asyncpg (the statement the API's repository builds,
  compiled by SQLAlchemy, prepared once), p50/p99, and the ratio API / raw;
- batch ingest: batches of 500 events through `POST /v1/events:batch`, events/s.

Figures go to bench/results/history.json (or `--out`) and standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import secrets
import socket
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import uvicorn
from common import admin_url, results_path
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.cli.migrate import upgrade
from services.history import partitions
from services.history.app import create_app
from services.history.repository import timeline_query
from services.history.settings import HistorySettings
from shared.apikeys import create_key
from shared.db import async_url, asyncpg_dsn, create_engine, create_session_factory
from shared.logging import configure_logging

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
CHUNK = 50_000
PAGE = 50
# Events are spread over this many days before now.
SPAN_DAYS = 700


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


_INDEXES = (
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'history'"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = indexname"
    " AND c.connamespace = 'history'::regnamespace)"
)
_CONSTRAINTS = (
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
    " WHERE connamespace = 'history'::regnamespace"
)


# Every table of the schema but Alembic's: the partitions go with their parent.
_TABLES = (
    "SELECT c.relname FROM pg_class AS c WHERE c.relnamespace = 'history'::regnamespace"
    " AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'alembic_version'"
    " ORDER BY 1"
)


def _table(qualified: str) -> str:
    return qualified.removeprefix("history.")


async def schema_objects(conn: asyncpg.Connection) -> dict[str, set[tuple[str, str, str]]]:
    """The history schema's indexes (not backing constraints) and constraints, as defined.

    The events' partitions are left out: each month's copies of the parent's indexes and
    constraints are made by PostgreSQL, named after the month, and follow the parent's.
    """
    indexes = {tuple(r) for r in await conn.fetch(_INDEXES)}
    constraints = {tuple(r) for r in await conn.fetch(_CONSTRAINTS)}
    return {
        "indexes": {r for r in indexes if not partitions.is_partition(r[0])},
        "constraints": {r for r in constraints if not partitions.is_partition(_table(r[0]))},
    }


def _cascading(definition: str) -> str:
    """A partitioned table's index definition as one that builds it on every partition too.

    PostgreSQL reports a partitioned table's index as `CREATE INDEX ... ON ONLY <table>`,
    which run as it is makes an invalid index on the parent alone.
    """
    return definition.replace(" ON ONLY ", " ON ", 1)


def span_months(now: datetime) -> list[datetime]:
    """The months the generated events fall in, and the months ahead the service keeps."""
    first = partitions.month_of(now - timedelta(days=SPAN_DAYS))
    this_month = partitions.month_of(now)
    ahead = HistorySettings.model_fields["history_partitions_months_ahead"].default
    months = [first]
    while months[-1] < partitions.add_months(this_month, ahead):
        months.append(partitions.add_months(months[-1], 1))
    return months


async def make_partitions(url: str, months: list[datetime]) -> int:
    """Give the events exactly `months` as month partitions (all empty); how many there are.

    Through the service's own code, so the naming and bounds are the service's. A month
    left by an earlier run outside the span is dropped, so every run reads as many.
    """
    engine = create_async_engine(async_url(url))
    try:
        async with AsyncSession(engine) as session, session.begin():
            for part in await partitions.month_partitions(session):
                if part.start not in months:
                    await session.execute(text(f"DROP TABLE {partitions.SCHEMA}.{part.name}"))
            for month in months:
                await partitions.create_month(session, month, lock_timeout_ms=10_000)
            return len(await partitions.month_partitions(session))
    finally:
        await engine.dispose()


async def reference_schema(url: str) -> dict[str, set[tuple[str, str, str]]]:
    """What the migrations create: read from a scratch database migrated for the purpose."""
    dsn = asyncpg_dsn(url)
    name = f"rb_bench_reference_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        scratch = url.rsplit("/", 1)[0] + "/" + name
        await asyncio.to_thread(upgrade, scratch, ["auth", "history"])
        conn = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/" + name)
        try:
            return await schema_objects(conn)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _event_chunks(
    rng: random.Random, ids: list[str], weights: list[float], events: int, now: datetime
) -> AsyncIterator[bytes]:
    """COPY text rows for `events` events, CHUNK rows per yielded piece."""
    cum = list(itertools.accumulate(weights))
    day0 = (now - timedelta(days=SPAN_DAYS)).date()
    days = [(day0 + timedelta(days=d)).isoformat() for d in range(SPAN_DAYS + 1)]
    kinds = [(c, *TYPES[c]) for c in CHANNELS]
    summaries = {"missed_call": "Missed call"}

    async def generate() -> AsyncIterator[bytes]:
        made = 0
        next_report = 1_000_000
        while made < events:
            size = min(CHUNK, events - made)
            owners = rng.choices(ids, cum_weights=cum, k=size)
            lines = []
            for owner in owners:
                channel, direction, type_ = kinds[rng.randrange(len(kinds))]
                second = rng.randrange(SPAN_DAYS * 86400)
                day, rest = divmod(second, 86400)
                hour, rest = divmod(rest, 3600)
                minute, sec = divmod(rest, 60)
                at = f"{days[day]} {hour:02d}:{minute:02d}:{sec:02d}+00"
                lines.append(
                    f"{rng.getrandbits(128):032x}\t{owner}\t{at}\t{at}\t{channel}\t{direction}"
                    f"\t{type_}\t\\N\t\\N\tsystem\t\\N\t{summaries.get(type_, 'Contact')}"
                    '\t{"queue": "billing"}\n'
                )
            made += size
            yield "".join(lines).encode()
            if made >= next_report or made == events:
                print(f"  generated {made:,} events", flush=True)
                next_report += 1_000_000

    return generate()


async def load(url: str, *, events: int, customers: int, seed: int) -> dict[str, Any]:
    """COPY customers, identities and events; build the indexes; roll up activity; ANALYZE."""
    rng = random.Random(seed)
    reference = await reference_schema(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    started = time.perf_counter()
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        tables = [
            name for (name,) in await conn.fetch(_TABLES) if not partitions.is_partition(name)
        ]
        await conn.execute(
            f"TRUNCATE {', '.join(f'history.{t}' for t in tables)} RESTART IDENTITY CASCADE"
        )
        # The events table bare for the COPY: its indexes and constraints come back below.
        current = await schema_objects(conn)
        for table, name, _ in current["indexes"]:
            if table == "events":
                await conn.execute(f'DROP INDEX history."{name}"')
        for table, name, _ in sorted(current["constraints"], key=_fk_first):
            if table == "history.events":
                await conn.execute(f'ALTER TABLE history.events DROP CONSTRAINT "{name}"')
        now = datetime.now(UTC)
        # After the indexes went: a month made now gets them when the parent's are built.
        months = await make_partitions(url, span_months(now))
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
        await conn.copy_to_table(
            "events",
            schema_name="history",
            columns=EVENT_COLUMNS,
            source=_event_chunks(rng, ids, weights, events, now),
            format="text",
        )
        copied = time.perf_counter() - started
        for table, name, definition in sorted(reference["constraints"], key=_fk_last):
            if table == "history.events":
                await conn.execute(
                    f'ALTER TABLE history.events ADD CONSTRAINT "{name}" {definition}'
                )
        for table, _, definition in sorted(reference["indexes"]):
            if table == "events":
                await conn.execute(_cascading(definition))
        indexed = time.perf_counter() - started
        await conn.execute(
            "INSERT INTO history.customer_activity"
            " (customer_id, channel, direction, type, count, last_occurred_at)"
            " SELECT customer_id, channel, direction, type, count(*), max(occurred_at)"
            " FROM history.events GROUP BY 1, 2, 3, 4"
        )
        # On a partitioned table VACUUM works through every partition and ANALYZE also
        # gathers the parent's statistics, which autovacuum never does for it.
        await conn.execute("VACUUM ANALYZE history.events")
        await conn.execute("ANALYZE history.customers")
        await conn.execute("ANALYZE history.identities")
        await conn.execute("ANALYZE history.customer_activity")
        # A partitioned table has no storage of its own: its size is its partitions'.
        size_bytes = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(relid))::bigint"
            " FROM pg_partition_tree('history.events')"
        )
        in_default = await conn.fetchval(
            f"SELECT count(*) FROM ONLY history.{partitions.DEFAULT_PARTITION}"
        )
        loaded = await schema_objects(conn)
    finally:
        await conn.close()
    missing = (reference["indexes"] - loaded["indexes"]) | (
        reference["constraints"] - loaded["constraints"]
    )
    extra = (loaded["indexes"] - reference["indexes"]) | (
        loaded["constraints"] - reference["constraints"]
    )
    if missing or extra:
        raise RuntimeError(f"schema differs from the migrations: missing {missing}, extra {extra}")
    return {
        "events": events,
        "customers": customers,
        "copy_seconds": round(copied, 1),
        "copy_events_per_second": round(events / copied, 1) if copied else None,
        "indexes_and_constraints_seconds": round(indexed - copied, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "events_table_bytes": size_bytes,
        "events_month_partitions": months,
        "events_in_default_partition": in_default,
        "schema_matches_migrations": True,
        "events_indexes": sorted(n for t, n, _ in loaded["indexes"] if t == "events"),
    }


def _fk_first(row: tuple[str, str, str]) -> tuple[bool, str]:
    """Foreign keys go before the keys they may depend on."""
    return (not row[2].startswith("FOREIGN KEY"), row[1])


def _fk_last(row: tuple[str, str, str]) -> tuple[bool, str]:
    return (row[2].startswith("FOREIGN KEY"), row[1])


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


async def plan_shape(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    """The first page's plan in figures: how it reads the partitions, and what that costs.

    Without a bound on `occurred_at` the first page reads every month (the default partition
    keeps PostgreSQL from taking them in order and stopping at the newest), so these grow
    with the months kept.
    """
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
    (top,) = json.loads(raw) if isinstance(raw, str) else raw
    nodes = list(_walk(top["Plan"]))
    scanned = [n["Relation Name"] for n in nodes if "Relation Name" in n]
    return {
        "nodes": " > ".join(dict.fromkeys(n["Node Type"] for n in nodes)),
        "partitions_scanned": sum(partitions.is_partition(name) for name in scanned),
        "shared_buffers": top["Plan"].get("Shared Hit Blocks", 0)
        + top["Plan"].get("Shared Read Blocks", 0),
        "planning_ms": round(top["Planning Time"], 3),
        "execution_ms": round(top["Execution Time"], 3),
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

    # The statement the API's first page runs (page of 50, one more to know if there is a next).
    compiled = timeline_query(
        customer_id=sample[0], channel=None, type_=None, before=None, after=None, limit=PAGE + 1
    ).compile(dialect=pg_asyncpg.dialect())  # type: ignore[no-untyped-call]
    raw_sql = compiled.string
    stmt = await conn.prepare(raw_sql)
    raw: list[float] = []
    for cid in sample:
        t = time.perf_counter()
        await stmt.fetch(cid, PAGE + 1)
        raw.append(time.perf_counter() - t)
    busiest = await conn.fetchval(
        "SELECT customer_id FROM history.customer_activity GROUP BY 1 ORDER BY sum(count) DESC"
        " LIMIT 1"
    )
    plan_rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {raw_sql}", busiest, PAGE + 1)
    plan = plan_rows[0][0] if plan_rows else ""
    shape = await plan_shape(conn, raw_sql, busiest, PAGE + 1)
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
    api_figures, raw_figures = _percentiles(api), _percentiles(raw)
    return {
        "timeline_first_page_api": api_figures,
        "timeline_first_page_raw_asyncpg": raw_figures,
        "timeline_api_over_raw": {
            "p50": round(api_figures["p50_ms"] / raw_figures["p50_ms"], 2),
            "p99": round(api_figures["p99_ms"] / raw_figures["p99_ms"], 2),
        },
        "batch_ingest": {
            "batches": batches,
            "batch_size": 500,
            "events_per_second": round(batches * 500 / elapsed, 1),
            "batch_latency": _percentiles(ingest),
        },
        "timeline_plan_busiest_customer": shape,
        "plan": plan,
        "plan_analyze_busiest_customer": "\n".join(r[0] for r in plan_rows),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RINGBACK_BENCH_HISTORY_DATABASE_URL")
        or make_url(admin_url()).set(database="rb_bench_history").render_as_string(False),
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards")
    parser.add_argument("--out", default=None)
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
    try:
        conn = await asyncpg.connect(asyncpg_dsn(args.database_url))
        result["events_in_table"] = await conn.fetchval("SELECT count(*) FROM history.events")
        await conn.close()
        result.update(
            await measure(
                args.database_url, requests=args.requests, batches=args.batches, seed=args.seed
            )
        )
    finally:
        if args.drop:
            dsn = asyncpg_dsn(args.database_url)
            admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
            name = dsn.rsplit("/", 1)[1].split("?")[0]
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    out = results_path("history", args.out)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if not k.startswith("plan")}
    print(json.dumps(summary, indent=2))
    print(result["plan_analyze_busiest_customer"])


if __name__ == "__main__":
    asyncio.run(main())
