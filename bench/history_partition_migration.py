"""History revision 0007 on a copy: how long moving N events into monthly partitions takes.

    .venv/bin/python bench/history_partition_migration.py [--events 1000000]
        [--customers N/20] [--months 24] [--writer-rate 200] [--out FILE]

In a scratch database (dropped afterwards) at history revision 0006: COPY `--customers`
customers and `--events` events spread over the last `--months` months (the old single
table, with its indexes, as a running install has it), VACUUM ANALYZE, then run
`ringback migrate`'s upgrade to 0007 while a writer inserts events through
`history.events` at `--writer-rate` a second, as ingest would. Reports the migration's
duration (and the copy's share, from the batches), the writer's inserts, failures and
latencies (its worst is the swap's pause), and checks that every row arrived: the same
number of events per customer before and after, plus the writer's.

Figures go to bench/results/history_partition_migration.json (or `--out`) and standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from alembic import command
from common import percentiles, results_path, scratch_database, write_results

from services.cli.migrate import alembic_config
from shared.db import asyncpg_dsn

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
    "summary",
    "data",
    "queue",
]
CHUNK = 50_000
# Per customer: events of each customer, as one text, compared before and after.
PER_CUSTOMER = (
    "SELECT md5(string_agg(customer_id || ':' || n, ',' ORDER BY customer_id)), sum(n)"
    " FROM (SELECT customer_id, count(*) AS n FROM history.events"
    " WHERE customer_id <> 'bench-writer' GROUP BY 1) AS per"
)


def _records(
    rng: random.Random, ids: list[str], count: int, months: int, now: datetime
) -> Iterator[list[tuple[Any, ...]]]:
    span = timedelta(days=30.4 * months).total_seconds()
    chunk: list[tuple[Any, ...]] = []
    for n in range(count):
        at = now - timedelta(seconds=rng.random() * span)
        callback = n % 3 == 0
        chunk.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                rng.choice(ids),
                at,
                at + timedelta(seconds=2),
                "phone" if n % 4 else "sms",
                "inbound" if n % 2 else "outbound",
                "callback_requested" if callback else "missed_call",
                "callback" if callback else None,
                f"cb-{n}" if callback else None,
                "Missed call on the main line",
                json.dumps({"queue": "default", "attempt": n % 5}),
                "default" if callback else None,
            )
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def load(url: str, *, events: int, customers: int, months: int) -> dict[str, Any]:
    rng = random.Random(22)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    started = time.perf_counter()
    try:
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(customers)]
        now = datetime.now(UTC)
        await conn.copy_records_to_table(
            "customers",
            schema_name="history",
            columns=["id", "created_at", "updated_at"],
            records=[(cid, now, now) for cid in ids],
        )
        await conn.execute(
            "INSERT INTO history.customers (id, created_at, updated_at)"
            " VALUES ('bench-writer', now(), now())"
        )
        for chunk in _records(rng, ids, events, months, now):
            await conn.copy_records_to_table(
                "events", schema_name="history", columns=EVENT_COLUMNS, records=chunk
            )
        await conn.execute("VACUUM ANALYZE history.events")
        size = await conn.fetchval("SELECT pg_total_relation_size('history.events')")
        digest, total = (await conn.fetch(PER_CUSTOMER))[0]
    finally:
        await conn.close()
    return {
        "events": events,
        "customers": customers,
        "months": months,
        "seconds": round(time.perf_counter() - started, 1),
        "events_table_bytes_before": size,
        "per_customer_digest": digest,
        "events_counted": int(total),
    }


class Writer:
    """Inserts events at a steady rate on a thread of its own until stopped."""

    def __init__(self, url: str, rate: float) -> None:
        self.url = url
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.url))
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                begun = time.perf_counter()
                try:
                    await conn.execute(
                        "INSERT INTO history.events (id, customer_id, occurred_at, received_at,"
                        " channel, direction, type, summary, data)"
                        " VALUES ($1, 'bench-writer', now(), now(), 'sms', 'outbound',"
                        " 'sms_sent', '', '{}')",
                        f"writer-{n}",
                    )
                    self.latencies.append(time.perf_counter() - begun)
                except asyncpg.PostgresError as exc:
                    self.errors.append(type(exc).__name__)
                await asyncio.sleep(max(0.0, self.interval - (time.perf_counter() - begun)))
        finally:
            await conn.close()


def migrate(url: str, writer: Writer | None) -> dict[str, Any]:
    config = alembic_config("history", url)
    stamps: list[float] = []
    config.attributes["history_between_batches"] = lambda _batch: stamps.append(time.perf_counter())
    if writer:
        writer.thread.start()
        time.sleep(1.0)  # the writer running before the migration starts
    started = time.perf_counter()
    command.upgrade(config, "0007")
    seconds = time.perf_counter() - started
    if writer:
        time.sleep(1.0)
        writer.stop.set()
        writer.thread.join()
    out: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "copy_batches": len(stamps),
        "first_batch_done_after_seconds": round(stamps[0] - started, 2) if stamps else None,
        "copy_seconds": round(stamps[-1] - stamps[0], 2) if len(stamps) > 1 else None,
        "after_copy_seconds": round(started + seconds - stamps[-1], 2) if stamps else None,
    }
    if writer:
        out["writer"] = {
            "inserts": len(writer.latencies),
            "failures": len(writer.errors),
            "failure_kinds": sorted(set(writer.errors)),
            "latency": percentiles(writer.latencies),
            "max_ms": round(max(writer.latencies) * 1000, 1) if writer.latencies else None,
        }
    return out


async def check(url: str, before: dict[str, Any], writer: Writer | None) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        digest, total = (await conn.fetch(PER_CUSTOMER))[0]
        written = await conn.fetchval(
            "SELECT count(*) FROM history.events WHERE customer_id = 'bench-writer'"
        )
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'history.events'::regclass"
        )
        in_default = await conn.fetchval("SELECT count(*) FROM ONLY history.events_default")
        size = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            " WHERE inhparent = 'history.events'::regclass"
        )
    finally:
        await conn.close()
    return {
        "per_customer_counts_equal": digest == before["per_customer_digest"],
        "events_counted": int(total),
        "writer_rows_kept": written == (len(writer.latencies) if writer else 0),
        "partitions": partitions,
        "rows_in_default_partition": in_default,
        "events_bytes_after": int(size or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--writer-rate", type=float, default=200.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    customers = args.customers or max(1, args.events // 20)
    with scratch_database(schemas=[]) as url:
        command.upgrade(alembic_config("history", url), "0006")
        loaded = asyncio.run(load(url, events=args.events, customers=customers, months=args.months))
        writer = Writer(url, args.writer_rate) if args.writer_rate > 0 else None
        migration = migrate(url, writer)
        checked = asyncio.run(check(url, loaded, writer))

        async def version() -> str:
            conn = await asyncpg.connect(asyncpg_dsn(url))
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        postgres = asyncio.run(version())
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "postgres": postgres,
        "command": "bench/history_partition_migration.py "
        f"--events {args.events} --months {args.months} --writer-rate {args.writer_rate:g}",
        "load": loaded,
        "migration": migration,
        "check": checked,
    }
    write_results(results_path("history_partition_migration", args.out), result)


if __name__ == "__main__":
    main()
