"""Scale-out figures: CPU per call per process, database and Redis growth, connection counts.

    .venv/bin/python bench/scale.py [--rate 20] [--seconds 30] [--pgbouncer] [--out FILE]

Starts the whole stack (one of each process, as bench/end_to_end.py does) on a scratch
database and Redis index, warms it up, then sends `--rate` distinct signed missed calls per
second for `--seconds` and waits until every confirmation SMS has reached the loopback gateway.
Over exactly that window it measures, in the same run:

- CPU seconds of each process (user + system, /proc/<pid>/stat, children included) per call;
- bytes of each schema's tables and indexes per call (`pg_total_relation_size`), the rows
  stored per call, and the WAL written per call (`pg_current_wal_lsn`; an upper bound when
  other work shares the server);
- the peak number of server connections to the scratch database (`pg_stat_activity`), direct
  or, with `--pgbouncer`, through a PgBouncer in transaction pooling (Debian's package);
- Redis `used_memory` per queued notification job: 10,000 jobs enqueued as the API enqueues
  them (arq, ringback's serializer), measured, then removed.

docs/scaling.md turns these into pods per process at the 10x peak of a million calls a day.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from common import (
    Stack,
    base_env,
    cpu_seconds,
    new_secret,
    results_path,
    scratch_database,
    scratch_redis,
    write_results,
)
from loadgen import paced, presign, run_fast
from sms_gateway import GatewayProcess

from shared.db import asyncpg_dsn

PROCESSES = ("history", "callback", "intake", "worker", "relay")
SCHEMAS = ("intake", "callback", "history")
QUEUED_JOBS = 10_000


async def database_figures(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        sizes = {
            schema: await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                schema,
            )
            for schema in SCHEMAS
        }
        rows = {
            "history.events": await conn.fetchval("SELECT count(*) FROM history.events"),
            "callback.callbacks": await conn.fetchval("SELECT count(*) FROM callback.callbacks"),
            "callback.notifications": await conn.fetchval(
                "SELECT count(*) FROM callback.notifications"
            ),
            "intake.inbound": await conn.fetchval("SELECT count(*) FROM intake.inbound"),
        }
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    finally:
        await conn.close()
    return {"bytes": sizes, "rows": rows, "wal_bytes": int(wal)}


class ConnectionSampler:
    """The peak count of server connections to one database, sampled every 0.2 s."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn, self.database = dsn, database
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()))

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                count = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                    "AND pid <> pg_backend_pid()",
                    self.database,
                )
                self.peak = max(self.peak, int(count))
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def redis_bytes_per_job(redis_url: str) -> float:
    """`used_memory` growth per queued `send_notification` job, as the API enqueues one."""
    from arq.connections import ArqRedis
    from redis.asyncio import ConnectionPool

    from shared.ids import new_id
    from shared.jobs import job_deserializer, job_serializer

    queue = "ringback:bench:memory"
    redis = ArqRedis(
        connection_pool=ConnectionPool.from_url(redis_url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        default_queue_name=queue,
    )
    try:
        before = int((await redis.info("memory"))["used_memory"])
        for _ in range(QUEUED_JOBS):
            notification = new_id()
            await redis.enqueue_job(
                "send_notification",
                notification,
                traceparent="00-" + "0" * 32 + "-" + "0" * 16 + "-01",
                _job_id=f"notify:{notification}",
            )
        after = int((await redis.info("memory"))["used_memory"])
        keys = [key async for key in redis.scan_iter(match="arq:job:notify:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await redis.delete(queue)
    finally:
        await redis.aclose(close_connection_pool=True)
    return (after - before) / QUEUED_JOBS


@contextlib.contextmanager
def through_pgbouncer(database: str, use: bool, logs: Path) -> Iterator[dict[str, str]]:
    """The settings that route the stack through a PgBouncer (transaction pooling), or none."""
    if not use:
        yield {}
        return
    from tests.support.pgbouncer import pgbouncer

    with pgbouncer(database, logs / "pgbouncer.log", pool_size=20) as bouncer:
        yield {
            "RINGBACK_DATABASE_URL": bouncer.url,
            "RINGBACK_DATABASE_DIRECT_URL": database,
            "RINGBACK_DB_POOLER": "pgbouncer",
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--tail", type=float, default=120.0, help="max wait for the last SMS")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pgbouncer", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--logs", default=None, help="keep the processes' logs in this folder")
    args = parser.parse_args()

    secret = new_secret()
    result: dict[str, Any] = {
        "offered_per_second": args.rate,
        "seconds": args.seconds,
        "through": "pgbouncer (transaction pooling)" if args.pgbouncer else "direct",
    }
    with (
        scratch_database() as database,
        scratch_redis() as redis_url,
        _logs_dir(args.logs) as logs,
        through_pgbouncer(database, args.pgbouncer, Path(logs)) as pooled,
        GatewayProcess() as gateway,
    ):
        env = base_env(
            database,
            redis_url,
            RINGBACK_WEBHOOK_SECRETS=secret,
            RINGBACK_SMS_PROVIDER="http",
            RINGBACK_SMS_HTTP_URL=gateway.url,
            **pooled,
        )
        dsn = asyncpg_dsn(database)
        name = dsn.rsplit("/", 1)[1]
        with Stack(env, Path(logs)) as stack:
            stack.start(*PROCESSES)
            host = stack.url("intake").removeprefix("http://")
            port = int(host.rsplit(":", 1)[1])
            warm = presign(secret, args.warmup, "scale-warm", tag_number=1)
            run_fast(paced("127.0.0.1", port, [s.raw(host) for s in warm], 10.0))
            gateway.wait_for(args.warmup, timeout=60)

            calls = presign(secret, int(args.rate * args.seconds), "scale", tag_number=2)
            before_db = run_fast(database_figures(dsn))
            before_cpu = {n: cpu_seconds(pid) for n, pid in stack.pids().items()}
            began = time.monotonic()
            with ConnectionSampler(dsn, name) as connections:
                sent = run_fast(paced("127.0.0.1", port, [s.raw(host) for s in calls], args.rate))
                accepted = sum(1 for t in sent.timings if t[3] == 202)
                arrived = gateway.wait_for(args.warmup + accepted, timeout=args.tail)
            elapsed = time.monotonic() - began
            after_cpu = {n: cpu_seconds(pid) for n, pid in stack.pids().items()}
            after_db = run_fast(database_figures(dsn))
        result["redis_bytes_per_queued_job"] = round(run_fast(redis_bytes_per_job(redis_url)))
    n = max(accepted, 1)
    result.update(
        {
            "calls_accepted_202": accepted,
            "sms_received": arrived - args.warmup,
            "window_seconds": round(elapsed, 1),
            "cpu_ms_per_call": {
                p: round((after_cpu[p] - before_cpu[p]) * 1000 / n, 2) for p in PROCESSES
            },
            "cpu_share_of_one_core": {
                p: round((after_cpu[p] - before_cpu[p]) / elapsed, 3) for p in PROCESSES
            },
            "db_bytes_per_call": {
                s: round((after_db["bytes"][s] - before_db["bytes"][s]) / n) for s in SCHEMAS
            },
            "rows_per_call": {
                t: round((after_db["rows"][t] - before_db["rows"][t]) / n, 2)
                for t in after_db["rows"]
            },
            "wal_bytes_per_call_upper_bound": round(
                (after_db["wal_bytes"] - before_db["wal_bytes"]) / n
            ),
            "peak_server_connections": connections.peak,
        }
    )
    write_results(results_path("scale_pgbouncer" if args.pgbouncer else "scale", args.out), result)
    return 0


@contextlib.contextmanager
def _logs_dir(keep: str | None) -> Iterator[str]:
    """A folder for the processes' logs: `keep` if given (left behind), else a temporary one."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory() as logs:
        yield logs


if __name__ == "__main__":
    sys.exit(main())
