"""Intake's signed generic webhook under load: a real intake process, pre-signed requests.

    .venv/bin/python bench/intake_webhook.py [--requests 3000] [--rate 200] [--concurrency 64]

Starts `ringback serve intake` against a fresh scratch database, pre-signs distinct missed
calls (each a new call id, so every request takes the full path: verify, store, two outbox
rows, commit), then fires them with httpx at a fixed rate and at saturation. Writes
bench/results/intake_webhook.json and prints it. Needs PostgreSQL
(RINGBACK_BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/postgres) and Redis
(RINGBACK_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0). The load generator is Python in
one process: at saturation it may itself be part of the limit (the figure is a floor).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.intake.providers.standard_webhooks import sign  # noqa: E402
from shared.migrate import upgrade  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PATH = "/v1/webhooks/generic"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def presign(secret: str, count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    """Distinct signed missed calls, made before the clock starts."""
    now = int(time.time())
    signed = []
    for i in range(count):
        event = {
            "id": f"evt_{tag}_{i}",
            "call_id": f"bench-{tag}-{i}",
            "from": f"040 {1_000_000 + i % 9_000_000}",
            "to": "+358942451000",
            "status": "no_answer",
            "occurred_at": "2026-11-24T12:00:00Z",
            "queue": "billing",
        }
        body = json.dumps(event).encode()
        msg_id = f"msg_{tag}_{i}"
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": sign(secret, msg_id, now, body),
        }
        signed.append((body, headers))
    return signed


def summarise(latencies: list[float], errors: int, seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "requests": float(len(latencies) + errors),
        "errors": float(errors),
        "seconds": round(seconds, 3),
        "requests_per_second": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(pct(0.50), 2),
        "p90_ms": round(pct(0.90), 2),
        "p99_ms": round(pct(0.99), 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else 0.0,
    }


async def fire(
    url: str, signed: list[tuple[bytes, dict[str, str]]], *, rate: float | None, concurrency: int
) -> dict[str, float]:
    """Send everything; at `rate` per second (open loop) or as fast as `concurrency` allows."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(body: bytes, headers: dict[str, str]) -> None:
            nonlocal errors
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(PATH, content=body, headers=headers)
                except httpx.HTTPError:
                    errors += 1
                    return
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        began = time.perf_counter()
        if rate is None:
            await asyncio.gather(*(one(body, headers) for body, headers in signed))
        else:
            tasks = []
            for i, (body, headers) in enumerate(signed):
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(body, headers)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return summarise(latencies, errors, elapsed)


async def _admin(url: str, statement: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def start_intake(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "serve", "intake", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("intake exited at start")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("intake did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="per phase")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed-rate phase, per second")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    admin = os.environ.get(
        "RINGBACK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("RINGBACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"ringback_bench_{secrets.token_hex(4)}"
    database = make_url(admin).set(database=name).render_as_string(hide_password=False)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    process: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {}
    try:
        upgrade(database)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
        env.update(
            {
                "RINGBACK_DATABASE_URL": database,
                "RINGBACK_REDIS_URL": redis_url,
                "RINGBACK_WEBHOOK_SECRETS": secret,
                "RINGBACK_INTERNAL_API_KEY": "rb_benchmark00_" + secrets.token_urlsafe(32),
                "RINGBACK_LOG_LEVEL": "WARNING",
                "RINGBACK_INTAKE_PORT": str(port),
            }
        )
        process = start_intake(env, port)
        url = f"http://127.0.0.1:{port}"
        warmup = presign(secret, 200, "warmup")
        fixed = presign(secret, args.requests, "fixed")
        saturated = presign(secret, args.requests, "saturation")
        asyncio.run(fire(url, warmup, rate=None, concurrency=8))
        results["fixed_rate"] = {
            "target_per_second": args.rate,
            **asyncio.run(fire(url, fixed, rate=args.rate, concurrency=args.concurrency)),
        }
        results["saturation"] = {
            "concurrency": args.concurrency,
            **asyncio.run(fire(url, saturated, rate=None, concurrency=args.concurrency)),
        }
        results["setup"] = {
            "server": "ringback serve intake (one uvicorn process)",
            "client": "httpx, one asyncio process",
            "path": "verify Standard Webhooks signature, insert inbound + receipt + 2 outbox rows",
        }
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=20)
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intake_webhook.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
