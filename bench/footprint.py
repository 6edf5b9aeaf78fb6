"""Footprint: each process's cold start to ready, its RSS idle, and its RSS under intake load.

    .venv/bin/python bench/footprint.py [--repeats 3] [--seconds 30] [--connections 64]
        [--out FILE]

On a scratch database and Redis index, with the SMS provider pointed at the loopback gateway:

- `cold_start_seconds`: for intake, callback and history, `--repeats` times each, the time from
  spawning `ringback serve <service>` to its `/readyz` answering 200 (polled every 20 ms);
  the process is stopped before the next. The worker and the relay have no readiness endpoint
  and are not timed.
- `rss_idle_mib`: the whole stack (the three services, `ringback worker`, `ringback intake-relay`)
  started, left idle a few seconds, then VmRSS from /proc/<pid>/status of each process and its
  descendants (summed, so pages shared with a child would count twice; none fork today).
- `rss_under_intake_load_mib`: the peak VmRSS of each process, sampled every 0.25 s, while
  intake takes distinct signed missed calls from wrk at saturation for `--seconds` (the same
  load as bench/intake_webhook.py; the other processes work through what it forwards). Without
  `wrk` the paced generator offers `--rate` per second instead, and the result says so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    SERVICES,
    RssSampler,
    Stack,
    base_env,
    mib,
    new_secret,
    results_path,
    rss_bytes,
    scratch_database,
    scratch_redis,
    spawn,
    stop,
    wait_ready,
    write_results,
)
from loadgen import paced, presign, run_fast, run_wrk_requests, wrk_available
from sms_gateway import GatewayProcess

PROCESSES = ("history", "callback", "intake", "worker", "relay")


def cold_starts(env: dict[str, str], logs: Path, repeats: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = {name: [] for name in SERVICES}
    for _ in range(repeats):
        for name in SERVICES:
            process = spawn(name, env, logs)
            try:
                timings[name].append(
                    round(wait_ready(process, env[f"RINGBACK_{name.upper()}_URL"]), 3)
                )
            finally:
                stop(process)
    return {
        name: {"median": round(statistics.median(values), 3), "all": values}
        for name, values in timings.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before sampling")
    parser.add_argument("--seconds", type=float, default=30.0, help="intake load (wrk)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="load without wrk")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    secret = new_secret()
    result: dict[str, Any] = {}
    with (
        scratch_database() as database,
        scratch_redis() as redis_url,
        tempfile.TemporaryDirectory() as logs,
        GatewayProcess() as gateway,
    ):
        env = base_env(
            database,
            redis_url,
            RINGBACK_WEBHOOK_SECRETS=secret,
            RINGBACK_SMS_PROVIDER="http",
            RINGBACK_SMS_HTTP_URL=gateway.url,
        )
        result["cold_start_seconds"] = cold_starts(env, Path(logs), args.repeats)
        with Stack(env, Path(logs)) as stack:
            stack.start(*PROCESSES)
            time.sleep(args.idle)
            pids = stack.pids()
            result["rss_idle_mib"] = {name: mib(rss_bytes(pid)) for name, pid in pids.items()}
            url = stack.url("intake")
            with RssSampler(pids) as sampler:
                if wrk_available():
                    # Enough distinct calls for 3,000/s; the load, not its figures, matters here.
                    signed = presign(secret, int(args.seconds * 3000) + 1000, "fp", tag_number=3)
                    load = run_wrk_requests(
                        url,
                        signed,
                        seconds=args.seconds,
                        connections=args.connections,
                        threads=args.threads,
                    )
                    result["load"] = {
                        "generator": f"wrk -t{args.threads} -c{args.connections}",
                        "requests_per_second": load["requests_per_second"],
                        "seconds": load["seconds"],
                        "wrapped": load["wrapped"],
                        "non_2xx": load["non_2xx"],
                        "socket_errors": load["socket_errors"],
                    }
                else:
                    print("wrk is not installed (`apt-get install -y wrk`): paced load instead")
                    host = url.removeprefix("http://")
                    signed = presign(secret, int(args.seconds * args.rate), "fp", tag_number=3)
                    paced_run = run_fast(
                        paced(
                            "127.0.0.1",
                            int(host.rsplit(":", 1)[1]),
                            [s.raw(host) for s in signed],
                            args.rate,
                        )
                    ).summary()
                    result["load"] = {
                        "generator": f"paced, {args.rate}/s offered (wrk missing)",
                        "requests_per_second": paced_run["achieved_per_second"],
                        "seconds": paced_run["seconds"],
                    }
            result["rss_under_intake_load_mib"] = {
                name: mib(value) for name, value in sampler.peak.items()
            }
            result["rss_after_load_mib"] = {name: mib(rss_bytes(pid)) for name, pid in pids.items()}
    write_results(results_path("footprint", args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
