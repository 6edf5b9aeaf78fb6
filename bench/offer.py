"""The phone-queue offer (§11): `GET /v1/queues/{key}/offer` over 10,000 open callbacks.

Run: `.venv/bin/python bench/offer.py [--callbacks 10000] [--requests 500] [--out FILE]`
(PostgreSQL from RINGBACK_BENCH_DATABASE_URL, default the local server). Creates a scratch
database with the promises-at-risk benchmark's queue (`at_risk._populate`: 40 agents planned,
25 on the roster, an overdue backlog and callbacks due over two days; the offer's limits lifted
so that every answer is simulated), serves callback's API
with uvicorn on loopback and asks for the offer `--requests` times in a row, with a caller's
number, as intake's wait TwiML does. Writes the latency percentiles to
`bench/results/offer.json` (or `--out`). The target: p99 at most 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from at_risk import KEY, _populate
from common import free_port, results_path, scratch_database, write_results

from services.callback.app import create_app
from services.callback.models import Queue
from services.callback.settings import CallbackSettings
from shared import eventloop
from shared.apikeys import create_key
from shared.db import create_engine, create_session_factory
from shared.logging import configure_logging


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(url: str, callbacks: int, requests: int) -> dict[str, Any]:
    settings = CallbackSettings(
        database_url=url,
        redis_url=os.environ.get("RINGBACK_REDIS_URL", "redis://127.0.0.1:6379/15"),
        internal_api_key="rb_internal0000_" + secrets.token_urlsafe(32),
        environment="test",
        log_level="WARNING",
        outbox_relay=False,
    )
    engine = create_engine(settings, application_name="ringback.bench.offer")
    sessions = create_session_factory(engine)
    await _populate(sessions, callbacks, datetime.now(UTC), random.Random(20))
    async with sessions() as session:
        _, key = await create_key(session, name="bench", scopes=["intake:write"])
        # Past the site's `max_waiting` (200) the answer is `full` without a simulation: lift
        # the limits so every request simulates the agents working the backlog ahead.
        queue = await session.get(Queue, KEY)
        assert queue is not None
        queue.config = {
            **queue.config,
            "offer": {"max_waiting": 100_000, "max_wait_minutes": 10_080},
        }
        await session.commit()
    await engine.dispose()

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as http:
            path = f"/v1/queues/{KEY}/offer"
            params = {"from": "+358401234567"}
            for _ in range(20):  # warm the pool and the key cache
                await http.get(path, params=params)
            cpu = time.process_time()
            for _ in range(requests):
                started = time.perf_counter()
                response = await http.get(path, params=params)
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            cpu = time.process_time() - cpu
            answer = response.json()
    finally:
        server.should_exit = True
        await task
    return {
        "callbacks": callbacks,
        "requests": requests,
        "answer": answer,
        "ms": {
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p90": round(_percentile(latencies, 0.90) * 1000, 2),
            "p99": round(_percentile(latencies, 0.99) * 1000, 2),
            "max": round(max(latencies) * 1000, 2),
        },
        # Client and server share this process: the CPU of both, per request.
        "cpu_ms_per_request": round(cpu / requests * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callbacks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--out")
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True, process="bench.offer")
    with scratch_database(["auth", "callback"]) as url:
        result = eventloop.run(run(url, args.callbacks, args.requests))
    path = results_path("offer", args.out)
    write_results(path, result)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
