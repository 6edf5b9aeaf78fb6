"""End to end: sustained missed calls, from intake's 202 to the SMS at a loopback gateway.

    .venv/bin/python bench/end_to_end.py [--rate 200 | --steps 30,60,90,120,150,200]
        [--seconds 60] [--tail 120] [--settle 10] [--out FILE]

Starts the whole stack as an operator runs it (`ringback serve history|callback|intake`,
`ringback worker`, `ringback intake-relay`, each a process of its own) on a scratch database and
Redis index, with the generic JSON SMS provider pointed at bench/sms_gateway.py (a process of
its own that records each SMS's arrival time and recipient). Then:

- a warm-up (`--warmup` calls, their SMS awaited, not counted), then `ANALYZE`, as autovacuum
  would have done in service: without it every statement's plan is made while the tables are
  nearly empty and kept, as a prepared statement's generic plan, while they grow (sequential
  scans over thousands of rows by the end of a step; `--no-analyze` measures that);
- `--rate` distinct signed missed calls per second for `--seconds`, pre-signed, sent open loop
  by the paced generator (bench/loadgen.py); every call is from a different number, so each
  must give exactly one confirmation SMS to that number;
- waits up to `--tail` seconds for the SMS still on their way, then `--settle` more seconds for
  late duplicates (the notification sweeper runs every 30 s: a longer settle catches more).

For each call answered 202: the time from the 202 reaching the sender to its SMS reaching the
gateway (both `time.monotonic()`, system-wide on Linux). Figures: p50/p90/p99/max of that,
`lost` (202 but no SMS), `duplicated` (SMS beyond the first per call), `unexpected` (SMS to a
number nobody called), the webhook latencies, the peak RSS of each process, and the CPU
milliseconds per call of each process and of the database's PostgreSQL backends over the
window from the first call sent to the last SMS arrived (`common.CpuMeter`; bench/README.md).

`--steps`: the same for each rate in turn on one stack (each `--seconds` long, its calls
signed just before it), stopping at the first rate that does not hold (p99 over 1 s, or a
call lost, duplicated or refused); `step_search.highest_rate_that_holds` is the figure, and
the top-level figures are the first step's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from common import (
    CpuMeter,
    RssSampler,
    Stack,
    base_env,
    mib,
    new_secret,
    percentiles,
    results_path,
    scratch_database,
    scratch_redis,
    write_results,
)
from loadgen import paced, presign, run_fast
from sms_gateway import GatewayProcess
from webhooks import admin_key, subscribe

from services.intake.settings import IntakeSettings
from shared.db import asyncpg_dsn

TOLERANCE = IntakeSettings.model_fields["webhook_tolerance_seconds"].default
PROCESSES = ("history", "callback", "intake", "worker", "relay")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--steps", default=None, help="step search: rates, e.g. 30,60,90,120")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tail", type=float, default=120.0, help="max wait for the last SMS")
    parser.add_argument("--settle", type=float, default=10.0, help="then wait for duplicates")
    parser.add_argument("--warmup", type=int, default=300, help="calls before measuring")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--no-analyze", dest="analyze", action="store_false", help="no ANALYZE after the warm-up"
    )
    parser.add_argument("--logs", default=None, help="keep the processes' logs in this folder")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="without v2's parts: no queue for the calls (they fall back to `default`, which "
        "has no plan), no webhook subscriber",
    )
    args = parser.parse_args()
    if args.seconds > TOLERANCE - 30:
        parser.error(f"the run must end within the signature tolerance ({TOLERANCE} s)")
    rates = [float(x) for x in args.steps.split(",")] if args.steps else [args.rate]

    secret = new_secret()
    result: dict[str, Any] = {"offered_per_second": rates[0], "seconds": args.seconds}
    with (
        scratch_database() as database,
        scratch_redis() as redis_url,
        _logs_dir(args.logs) as logs,
        GatewayProcess() as gateway,
        # The webhook subscriber: the same loopback server in a process of its own (it answers
        # any POST at once and counts it), so its work is not the load generator's.
        GatewayProcess() as subscriber,
    ):
        env = base_env(
            database,
            redis_url,
            RINGBACK_WEBHOOK_SECRETS=secret,
            RINGBACK_SMS_PROVIDER="http",
            RINGBACK_SMS_HTTP_URL=gateway.url,
            # The subscriber below listens on loopback.
            RINGBACK_WEBHOOK_ALLOW_PRIVATE="true",
        )
        dsn = asyncpg_dsn(database)
        with Stack(env, Path(logs)) as stack:
            try:
                stack.start(*PROCESSES)
            except RuntimeError:
                for name in PROCESSES:
                    log = Path(logs) / f"{name}.log"
                    if log.exists():
                        print(f"--- {name}.log", log.read_text()[-2000:], sep="\n")
                raise
            host = stack.url("intake").removeprefix("http://")
            port = int(host.rsplit(":", 1)[1])
            if not args.plain:
                _attach_v2(stack, env, f"{subscriber.base}/hooks")

            warm = presign(secret, args.warmup, "e2e-warm", tag_number=1)
            run_fast(paced("127.0.0.1", port, [s.raw(host) for s in warm], 30.0))
            if gateway.wait_for(args.warmup, timeout=60) < args.warmup:
                print("warning: not every warm-up SMS arrived")
            if args.analyze:
                asyncio.run(_analyze(dsn))

            steps = []
            known = {s.phone for s in warm}
            for number, rate in enumerate(rates):
                step = _step(stack, gateway, secret, host, port, dsn, rate, number + 2, args, known)
                steps.append(step)
                print(json.dumps({k: step[k] for k in SHOWN}), flush=True)
                if not step["holds"]:
                    break  # a backlog left behind would spoil every higher step
            if not args.plain:
                result["v2"] = {
                    "queue": QUEUE,
                    "webhook_requests_received": subscriber.count(),
                }
    first = steps[0]
    result.update({k: v for k, v in first.items() if k not in ("offered_per_second", "holds")})
    if args.steps:
        held = [s["offered_per_second"] for s in steps if s["holds"]]
        result["step_search"] = {
            "rates": rates,
            "seconds_per_step": args.seconds,
            "highest_rate_that_holds": max(held) if held else None,
            "steps": steps,
        }
    write_results(results_path("end_to_end", args.out), result)
    return 0


SHOWN = ("offered_per_second", "calls_accepted_202", "lost", "duplicated", "holds")
# Every call names this queue (bench/loadgen.py); with v2's parts it exists, with a plan open
# around the clock and room for every call, so each is booked into a slot before it is
# confirmed, and its confirmation names the slot.
QUEUE = "billing"


def _attach_v2(stack: Stack, env: dict[str, str], subscriber_url: str) -> None:
    """The queue the calls name, and a subscriber to every event at `subscriber_url`."""
    headers = {"Authorization": f"Bearer {admin_key(env)}"}
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    plan = {
        "timezone": "Europe/Helsinki",
        "business_hours": {day: [{"start": "00:00", "end": "24:00"}] for day in days},
        # Room for every call of a run in one slot: a call booked into the next slot has its
        # reminder due when this one starts, a second SMS that would count as a duplicate.
        "default_agents": 1000,
        "callbacks_per_agent_per_slot": 100,
    }
    with httpx.Client(base_url=stack.url("callback"), headers=headers, timeout=30) as client:
        client.put(
            f"/v1/queues/{QUEUE}", json={"name": "Billing", "capacity": plan}
        ).raise_for_status()
    with httpx.Client(base_url=stack.url("history"), headers=headers, timeout=30) as client:
        subscribe(client, subscriber_url, ["*"])


async def _analyze(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def _step(
    stack: Stack,
    gateway: GatewayProcess,
    secret: str,
    host: str,
    port: int,
    dsn: str,
    rate: float,
    tag_number: int,
    args: argparse.Namespace,
    known: set[str],
) -> dict[str, Any]:
    """`rate` calls/s for `args.seconds`: latency 202 -> SMS, lost, duplicated, CPU per call."""
    before = gateway.count()
    signed = presign(secret, int(rate * args.seconds), f"e2e{tag_number}", tag_number=tag_number)
    meter = CpuMeter(stack.pids(), dsn, dsn.rsplit("/", 1)[1])
    with RssSampler({**stack.pids(), "sms_gateway": gateway.pid}) as rss:
        meter.start()
        sent = run_fast(paced("127.0.0.1", port, [s.raw(host) for s in signed], rate))
        ours = {s.phone for s in signed}
        accepted = {
            s.phone: answered
            for s, (_, _, answered, status) in zip(signed, sent.timings, strict=True)
            if status == 202
        }
        gateway.wait_for(before + len(accepted), timeout=args.tail)
        cpu = meter.stop(len(accepted))
        time.sleep(args.settle)
    records = gateway.dump()
    arrivals: dict[str, list[float]] = defaultdict(list)
    for arrived, to, _ in records:
        arrivals[to].append(arrived)
    known.update(s.phone for s in signed)
    latencies = [min(arrivals[p]) - at for p, at in accepted.items() if arrivals.get(p)]
    webhook = sent.summary()
    step: dict[str, Any] = {
        "offered_per_second": rate,
        "calls_sent": len(signed),
        "calls_accepted_202": len(accepted),
        "webhook_statuses": webhook["statuses"],
        "webhook_errors": webhook["errors"],
        "webhook_latency": webhook["latency"],
        "sms_received": sum(len(arrivals[p]) for p in accepted),
        "lost": sum(1 for p in accepted if not arrivals.get(p)),
        "duplicated": sum(max(0, len(arrivals[p]) - 1) for p in accepted),
        # SMS to a number nobody called, or to a call of this step that got no 202.
        "unexpected": sum(
            len(v)
            for p, v in arrivals.items()
            if p not in known or (p in ours and p not in accepted)
        ),
        "accepted_to_sms": percentiles(latencies),
        **cpu,
        "rss_peak_mib": {name: mib(value) for name, value in rss.peak.items()},
        "settle_seconds": args.settle,
    }
    p99 = step["accepted_to_sms"].get("p99_ms")
    step["holds"] = bool(
        p99 is not None
        and p99 <= 1000
        and step["lost"] == 0
        and step["duplicated"] == 0
        and len(accepted) == len(signed)
    )
    return step


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
