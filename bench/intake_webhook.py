"""Intake's signed, durable missed-call webhook: saturation with wrk, latency at a fixed rate.

    .venv/bin/python bench/intake_webhook.py [--seconds 30] [--connections 64] [--threads 2]
        [--rate 1000] [--rate-seconds 30] [--no-half] [--out FILE]

Starts `ringback serve intake` (one uvicorn process) on a scratch database. Every request is
a different missed call, pre-signed before the clock starts (new event id, call id, caller
and `webhook-id`), so each takes the full durable path: Standard Webhooks signature on the raw
bytes, webhook-id receipt, inbound row, two outbox rows and their NOTIFY, one commit, then 202.

- `saturation`: `wrk` (Debian's) with `--connections` fixed keep-alive connections over
  `--threads` threads, cycling through the pre-built requests (bench/loadgen.py: a Lua
  `request()` returning `wrk.format(...)` requests loaded from a file at init, each thread its
  own slice). The pool is sized from a warm-up run (`--pool` to force it); `wrapped` counts
  requests sent a second time because it ran out (then the figure is not all new inserts).
  The floors (bench/floors.py) are measured with the same wrk settings, so ratios compare like
  with like.
- `fixed_rate`: `--rate` requests/s offered for `--rate-seconds`, open loop, by the paced
  generator in bench/loadgen.py (why not wrk: see there). Latency is from each request's due
  time. The floors are measured at the same rate with the same generator.
- `half_saturation`: then the same fixed-rate phase at half the rate wrk saturated at
  (issue #21's latency target: p99 at most 50 ms there); `--no-half` skips it.
- `rss`: intake's RSS idle (after the warm-up) and its peak during the saturation run.
- `stored`: rows in `intake.inbound` against 202s answered (durability check).

Signatures carry the time of signing; every phase is signed just before it runs and must end
within intake's tolerance (`RINGBACK_WEBHOOK_TOLERANCE_SECONDS`, default 300 s).
Needs `wrk` (`apt-get install -y wrk`) for the saturation phase: without it that phase is
reported as skipped and the script exits with status 2 after the fixed-rate phase.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
from common import (
    RssSampler,
    Stack,
    base_env,
    mib,
    new_secret,
    results_path,
    rss_bytes,
    scratch_database,
    scratch_redis,
    write_results,
)
from loadgen import WrkMissing, paced, presign, run_fast, run_wrk_requests, wrk_available

from services.intake.settings import IntakeSettings
from shared.db import asyncpg_dsn

TOLERANCE = IntakeSettings.model_fields["webhook_tolerance_seconds"].default


def fixed_rate(
    url: str, secret: str, rate: float, seconds: float, tag_number: int
) -> dict[str, Any]:
    """Warm up one second at the rate, then measure `seconds` at the rate."""
    host = urlparse(url).netloc
    port = int(host.rsplit(":", 1)[1])
    warm = presign(secret, max(1, int(rate)), f"pw{tag_number}", tag_number=tag_number)
    warmed = run_fast(paced("127.0.0.1", port, [s.raw(host) for s in warm], rate))
    signed = presign(secret, int(rate * seconds), f"p{tag_number}", tag_number=tag_number + 1)
    result = run_fast(paced("127.0.0.1", port, [s.raw(host) for s in signed], rate)).summary()
    result["warmup_202"] = warmed.statuses.get(202, 0)
    return result


async def _stored(database_url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM intake.inbound"))
    finally:
        await conn.close()


def saturate(
    url: str,
    secret: str,
    *,
    seconds: float,
    connections: int,
    threads: int,
    pool: int | None,
    warmup: float,
    tag_number: int,
) -> dict[str, Any]:
    """A wrk warm-up (sizes the pool), then the measured wrk run over distinct requests."""
    warm_pool = presign(secret, int(max(1.0, warmup) * 6000), f"w{tag_number}", tag_number=90)
    warm = run_wrk_requests(
        url, warm_pool, seconds=warmup, connections=connections, threads=threads
    )
    warm["pool"] = len(warm_pool)
    size = pool or int(warm["requests_per_second"] * seconds * 1.6) + 2000
    signed = presign(secret, size, f"s{tag_number}", tag_number=tag_number)
    result = run_wrk_requests(
        url, signed, seconds=seconds, connections=connections, threads=threads
    )
    result["pool"] = size
    result["warmup"] = warm
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30, help="saturation run (wrk)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5, help="wrk warm-up seconds")
    parser.add_argument("--pool", type=int, default=None, help="pre-signed requests for wrk")
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate phase, per second")
    parser.add_argument("--rate-seconds", type=float, default=30)
    parser.add_argument("--no-half", action="store_true", help="skip the half-saturation phase")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if max(args.seconds + args.warmup, args.rate_seconds + 1) > TOLERANCE - 30:
        parser.error(f"phases must end within the signature tolerance ({TOLERANCE} s)")

    secret = new_secret()
    results: dict[str, Any] = {}
    status = 0
    with (
        scratch_database(["intake"]) as database,
        scratch_redis() as redis_url,
        tempfile.TemporaryDirectory() as logs,
    ):
        env = base_env(database, redis_url, RINGBACK_WEBHOOK_SECRETS=secret)
        with Stack(env, Path(logs)) as stack:
            stack.start("intake")
            url = stack.url("intake")
            pid = stack.processes["intake"].pid
            results["fixed_rate"] = fixed_rate(url, secret, args.rate, args.rate_seconds, 10)
            if wrk_available():
                idle = rss_bytes(pid)
                with RssSampler({"intake": pid}) as sampler:
                    results["saturation"] = saturate(
                        url,
                        secret,
                        seconds=args.seconds,
                        connections=args.connections,
                        threads=args.threads,
                        pool=args.pool,
                        warmup=args.warmup,
                        tag_number=20,
                    )
                results["rss"] = {
                    "idle_mib": mib(idle),
                    "peak_under_load_mib": mib(sampler.peak["intake"]),
                }
                if results["saturation"]["wrapped"]:
                    print("warning: the pre-signed pool ran out; rerun with a larger --pool")
                half = results["saturation"].get("requests_per_second")
                if not args.no_half and half:
                    results["half_saturation"] = fixed_rate(
                        url, secret, round(half / 2), args.rate_seconds, 40
                    )
            else:
                results["saturation"] = {"skipped": str(WrkMissing("wrk is not installed"))}
                print("wrk is not installed (`apt-get install -y wrk`): saturation skipped")
                status = 2
            time.sleep(0.5)
        answered = 0
        for phase in ("fixed_rate", "half_saturation"):
            if phase in results:
                fixed = results[phase]
                answered += fixed["statuses"].get("202", 0) + fixed.pop("warmup_202")
        saturation = results["saturation"]
        for run in (saturation.get("warmup"), saturation):
            if run and "requests" in run:
                answered += min(run["requests"] - run["non_2xx"], run["pool"])
        # Each distinct request answered 202 must be one stored call (wrk's last in-flight
        # requests may be stored without being counted: a few more rows is not a loss).
        results["stored"] = {
            "inbound_rows": asyncio.run(_stored(database)),
            "distinct_requests_answered_2xx": answered,
        }
    results["setup"] = {
        "server": "ringback serve intake (one uvicorn process)",
        "saturation_client": f"wrk -t{args.threads} -c{args.connections}, distinct pre-signed",
        "fixed_rate_client": "bench/loadgen.py paced open-loop generator (uvloop, raw streams)",
        "path": "verify Standard Webhooks signature, receipt + inbound + 2 outbox rows, commit",
    }
    write_results(results_path("intake_webhook", args.out), results)
    return status


if __name__ == "__main__":
    sys.exit(main())
