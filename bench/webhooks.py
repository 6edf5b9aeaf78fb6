"""Webhooks out: deliveries per second to a loopback receiver, and confirmations with five
slow subscribers attached.

    .venv/bin/python bench/webhooks.py [--events 5000] [--rate 20] [--seconds 10] [--rounds 3]
        [--out FILE]

Starts the whole stack as an operator runs it (history, callback, intake, the worker and the
intake relay, each a process of its own) on a scratch database and Redis index, with SMS going
to bench/sms_gateway.py, and `RINGBACK_WEBHOOK_ALLOW_PRIVATE=true` so subscribers may listen
on loopback. An admin key is made with `ringback api-key create`; endpoints are made over REST.
In one run:

1. **Throughput.** One receiver on loopback (a threaded HTTP server in this process that
   answers 204 at once) subscribes to `callback.created`; `--events` such events are recorded
   in history (`POST /v1/events:batch`, 500 at a time). Figure: deliveries per second, from the
   first batch sent to the last delivery received, and from the last batch stored.
2. **Confirmations, alone and with five slow subscribers, interleaved.** `--rounds` times:
   `--rate` signed missed calls per second for `--seconds`, each from its own number, with no
   subscriber; then five endpoints subscribed to every event, each a server that takes every
   request and never answers (history cuts each off after its timeout, 10 s), the same load
   again with new numbers; then those endpoints are deleted. Figure: p50/p90/p99 from intake's
   202 to the confirmation SMS at the gateway (as bench/end_to_end.py measures it), pooled per
   condition, and the p90 ratio (attached / alone) of each round and its median. Alternating
   short phases keeps a shared machine's drift from reading as a difference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from common import (
    ROOT,
    SERVICE_PYTHON,
    Stack,
    base_env,
    new_secret,
    percentiles,
    results_path,
    scratch_database,
    scratch_redis,
    write_results,
)
from loadgen import paced, presign, run_fast
from sms_gateway import GatewayProcess

from shared.ids import new_id

PROCESSES = ("history", "callback", "intake", "worker", "relay")
SLOW_SUBSCRIBERS = 5
BATCH = 500


class Receiver:
    """A subscriber on loopback: counts requests and their arrival times; answers 204, or
    holds each request `hang` seconds without answering (a subscriber that is down)."""

    def __init__(self, hang: float = 0.0) -> None:
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.arrivals.append(time.monotonic())
                if hang:
                    time.sleep(hang)
                    return
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, pid in pids.items():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / tick
    return used


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in after}


def admin_key(env: dict[str, str]) -> str:
    """A key made as an operator makes one: the last line of `ringback api-key create`."""
    done = subprocess.run(
        [SERVICE_PYTHON, "-m", "services.cli.main", "api-key", "create", "--scope", "admin"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def subscribe(client: httpx.Client, url: str, events: list[str]) -> str:
    response = client.post("/v1/webhook-endpoints", json={"url": url, "events": events})
    response.raise_for_status()
    endpoint_id: str = response.json()["id"]
    return endpoint_id


def callback_created(i: int) -> dict[str, Any]:
    return {
        "id": new_id(),
        "occurred_at": "2026-12-06T09:00:00Z",
        "channel": "phone",
        "direction": "internal",
        "type": "callback_created",
        "customer": {"phone": f"+35850{3_000_000 + i}"},
        "subject": {"kind": "callback", "id": f"bench-{i}"},
        "summary": "Callback created",
        "data": {"status": "pending", "queue": "default", "attempts": 0},
    }


def throughput(client: httpx.Client, events: int) -> dict[str, Any]:
    """Phase 1: deliveries per second to one receiver on loopback."""
    receiver = Receiver()
    try:
        endpoint_id = subscribe(client, receiver.url, ["callback.created"])
        began = time.monotonic()
        for start in range(0, events, BATCH):
            body = {
                "events": [callback_created(i) for i in range(start, min(events, start + BATCH))]
            }
            client.post("/v1/events:batch", json=body).raise_for_status()
        stored = time.monotonic()
        deadline = stored + 600
        while receiver.count() < events and time.monotonic() < deadline:
            time.sleep(0.05)
        last = max(receiver.arrivals) if receiver.arrivals else stored
        client.delete(f"/v1/webhook-endpoints/{endpoint_id}").raise_for_status()
    finally:
        receiver.close()
    received = receiver.count()
    return {
        "events": events,
        "received": received,
        "store_seconds": round(stored - began, 3),
        "deliver_seconds": round(last - began, 3),
        "deliveries_per_second": round(received / (last - began), 1) if last > began else None,
        "after_stored_per_second": round(received / (last - stored), 1) if last > stored else None,
    }


def confirmations(
    gateway: GatewayProcess, intake_url: str, secret: str, rate: float, seconds: float, tag: int
) -> dict[str, Any]:
    """Phases 2 and 3: signed missed calls at `rate`; intake's 202 to the confirmation SMS."""
    host = intake_url.removeprefix("http://")
    port = int(host.rsplit(":", 1)[1])
    before = gateway.count()
    signed = presign(secret, int(rate * seconds), f"wh{tag}", tag_number=tag)
    sent = run_fast(paced("127.0.0.1", port, [s.raw(host) for s in signed], rate))
    accepted = {
        s.phone: answered
        for s, (_, _, answered, status) in zip(signed, sent.timings, strict=True)
        if status == 202
    }
    gateway.wait_for(before + len(accepted), timeout=120)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for arrived, to, _ in gateway.dump():
        arrivals[to].append(arrived)
    latencies = [min(arrivals[p]) - at for p, at in accepted.items() if arrivals.get(p)]
    return {
        "calls": len(signed),
        "accepted": len(accepted),
        "lost": sum(1 for p in accepted if not arrivals.get(p)),
        "accepted_to_sms": percentiles(latencies),
        "latencies": latencies,
    }


@contextmanager
def _logs_dir(keep: str | None) -> Iterator[str]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="ringback-bench-webhooks-") as tmp:
        yield tmp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=5000, help="phase 1's events")
    parser.add_argument("--rate", type=float, default=20.0, help="missed calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="per confirmation phase")
    parser.add_argument("--rounds", type=int, default=3, help="alone/attached pairs")
    parser.add_argument("--warmup", type=int, default=50, help="calls before measuring")
    parser.add_argument("--out", default=None)
    parser.add_argument("--logs", default=None, help="keep the processes' logs in this folder")
    args = parser.parse_args()

    secret = new_secret()
    result: dict[str, Any] = {"rate_per_second": args.rate, "seconds": args.seconds}
    with (
        scratch_database() as database,
        scratch_redis() as redis_url,
        _logs_dir(args.logs) as logs,
        GatewayProcess() as gateway,
    ):
        env = base_env(
            database,
            redis_url,
            RINGBACK_WEBHOOK_SECRETS=secret,
            RINGBACK_SMS_PROVIDER="http",
            RINGBACK_SMS_HTTP_URL=gateway.url,
            RINGBACK_WEBHOOK_ALLOW_PRIVATE="true",
        )
        with Stack(env, Path(logs)) as stack:
            stack.start(*PROCESSES)
            headers = {"Authorization": f"Bearer {admin_key(env)}"}
            with httpx.Client(base_url=stack.url("history"), headers=headers, timeout=60) as client:
                result["throughput"] = throughput(client, args.events)
                host = stack.url("intake")
                # Warm-up: a few calls and their SMS, not counted (phase 2 counts from here).
                confirmations(gateway, host, secret, 10.0, args.warmup / 10.0, tag=1)
                slow = [Receiver(hang=600.0) for _ in range(SLOW_SUBSCRIBERS)]
                rounds: list[dict[str, Any]] = []
                try:
                    pids = stack.pids()
                    for n in range(args.rounds):
                        began = cpu_seconds(pids)
                        alone = confirmations(
                            gateway, host, secret, args.rate, args.seconds, tag=10 + 2 * n
                        )
                        alone["cpu_seconds"] = _spent(began, began := cpu_seconds(pids))
                        slow_ids = [subscribe(client, r.url, ["*"]) for r in slow]
                        attached = confirmations(
                            gateway, host, secret, args.rate, args.seconds, tag=11 + 2 * n
                        )
                        attached["cpu_seconds"] = _spent(began, cpu_seconds(pids))
                        for endpoint_id in slow_ids:
                            client.delete(f"/v1/webhook-endpoints/{endpoint_id}")
                        rounds.append({"no_subscribers": alone, "five_slow_subscribers": attached})
                    held = sum(r.count() for r in slow)
                finally:
                    for receiver in slow:
                        receiver.close()
    for phase in ("no_subscribers", "five_slow_subscribers"):
        pooled = [x for r in rounds for x in r[phase].pop("latencies")]
        result[phase] = {
            "calls": sum(r[phase]["calls"] for r in rounds),
            "lost": sum(r[phase]["lost"] for r in rounds),
            "accepted_to_sms": percentiles(pooled),
        }
    result["five_slow_subscribers"]["requests_held_by_slow_subscribers"] = held
    ratios = [
        round(
            r["five_slow_subscribers"]["accepted_to_sms"]["p90_ms"]
            / r["no_subscribers"]["accepted_to_sms"]["p90_ms"],
            2,
        )
        for r in rounds
        if r["no_subscribers"]["accepted_to_sms"].get("p90_ms")
        and r["five_slow_subscribers"]["accepted_to_sms"].get("p90_ms")
    ]
    result["p90_ratio_per_round"] = ratios
    result["p90_ratio_median"] = statistics.median(ratios) if ratios else None
    result["rounds"] = rounds
    write_results(results_path("webhooks", args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
