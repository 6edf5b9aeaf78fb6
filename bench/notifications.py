"""Notifications per second for one worker process, and arq's own no-op ceiling beside it.

    .venv/bin/python bench/notifications.py [--count 5000] [--gateway-delays-ms 0,100]
        [--out FILE]

On a scratch database and a Redis database index of its own:

1. `notifications`: writes `--count` queued SMS notifications (with their callbacks), enqueues
   their jobs, starts `ringback worker` against the loopback SMS gateway (bench/sms_gateway.py,
   a process of its own answering 202 at once) and waits until every row is `sent`. The rate
   is counted between the first and the last SMS arriving at the gateway (worker start-up
   excluded); the rate including start-up is reported too, and the worker's CPU per
   notification over the same window (`worker_cpu_ms_per_notification`, from /proc).
2. `arq_noop_ceiling`: the same number of jobs under the same name, serializer, `max_jobs`,
   `poll_delay`, timeouts and `keep_result` (callback's `worker_settings`), but the function
   does nothing; one arq worker process in burst mode. Its rate, counted the same way (first to
   last job finished), is what arq alone can do with these settings on this machine.
   `lean_noop_ceiling`: the same with the worker class `ringback worker` runs
   (`shared.job_start.LeanWorker`, a poll's jobs started in one round trip): what our start
   buys in arq's own loop. The ratios are to arq's, the reference the targets name.

Phase 1 runs once per `--gateway-delays-ms` value, each on a fresh scratch database, with the
gateway answering each SMS that many milliseconds after it arrived (a real provider takes
100-500 ms): `notifications` at the first value, `notifications_gateway_<N>ms` at the others.

`ratio_to_arq_noop` is the first over the second (`ratio_to_arq_noop_gateway_<N>ms` likewise).
The worker's settings are its defaults unless `RINGBACK_WORKER_MAX_JOBS` /
`RINGBACK_WORKER_POLL_DELAY_SECONDS` are set in the environment (both phases use them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    SERVICE_PYTHON,
    base_env,
    cpu_seconds,
    results_path,
    scratch_database,
    scratch_redis,
    spawn,
    stop,
    write_results,
)
from sms_gateway import GatewayProcess
from sqlalchemy import func, select

from services.callback.jobs import SEND_NOTIFICATION, ArqNotificationQueue
from services.callback.models import Callback, Notification
from services.callback.settings import CallbackSettings
from shared.db import create_engine, create_session_factory
from shared.ids import new_id
from shared.service_app import create_redis


def _settings(database_url: str, redis_url: str, queue_name: str, sms_url: str) -> CallbackSettings:
    overrides: dict[str, Any] = {}
    for name in ("worker_max_jobs", "worker_poll_delay_seconds"):
        value = os.environ.get(f"RINGBACK_{name.upper()}")
        if value:
            overrides[name] = value
    return CallbackSettings(
        database_url=database_url,
        redis_url=redis_url,
        queue_name=queue_name,
        sms_provider="http",
        sms_http_url=sms_url,
        **overrides,
    )


async def prepare(settings: CallbackSettings, count: int) -> None:
    engine = create_engine(settings, application_name="ringback.bench.notifications")
    sessions = create_session_factory(engine)
    now = datetime.now(UTC)
    ids: list[str] = []
    async with sessions() as session:
        for batch in range(0, count, 500):
            callbacks, rows = [], []
            for i in range(batch, min(count, batch + 500)):
                callback = Callback(
                    id=new_id(),
                    phone=f"+3584080{i:05d}",
                    language="fi",
                    status="pending",
                    source="missed_call",
                    channel="phone",
                    priority=0,
                    first_contact_at=now,
                    due_at=now,
                    sla_deadline=now + timedelta(hours=2),
                    contact_count=1,
                    consent_sms=True,
                    consent_email=False,
                    asap=True,
                    booking_seq=0,
                    attempt_count=0,
                    created_at=now,
                    updated_at=now,
                )
                callbacks.append(callback)
                rows.append(
                    Notification(
                        id=new_id(),
                        callback_id=callback.id,
                        kind="confirmation",
                        event_key=f"confirmation:{callback.id}:bench",
                        channel="sms",
                        provider="http",
                        status="queued",
                        recipient=callback.phone,
                        body="Hei! Saimme soittopyyntösi. Soitamme sinulle mahdollisimman pian.",
                        attempts=0,
                        max_attempts=5,
                        next_attempt_at=now,
                    )
                )
            session.add_all(callbacks)
            await session.flush()
            session.add_all(rows)
            ids += [r.id for r in rows]
        await session.commit()
    pool = create_redis(settings)
    await ArqNotificationQueue(pool).enqueue_notifications(ids)
    await pool.aclose(close_connection_pool=True)
    await engine.dispose()


async def sent_count(settings: CallbackSettings) -> int:
    engine = create_engine(settings, application_name="ringback.bench.notifications")
    sessions = create_session_factory(engine)
    async with sessions() as session:
        sent = await session.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == "sent")
        )
    await engine.dispose()
    return int(sent or 0)


def measure_worker(
    database_url: str, redis_url: str, count: int, logs: Path, delay_ms: float = 0.0
) -> dict[str, Any]:
    with GatewayProcess(delay_ms) as gateway:
        env = base_env(
            database_url,
            redis_url,
            RINGBACK_SMS_PROVIDER="http",
            RINGBACK_SMS_HTTP_URL=gateway.url,
            RINGBACK_OUTBOX_RELAY="false",
        )
        for name in ("RINGBACK_WORKER_MAX_JOBS", "RINGBACK_WORKER_POLL_DELAY_SECONDS"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        settings = _settings(database_url, redis_url, env["RINGBACK_QUEUE_NAME"], gateway.url)
        asyncio.run(prepare(settings, count))
        began = time.monotonic()
        worker = spawn("worker", env, logs)
        try:
            # The worker's CPU from its first send to its last: start-up left out, as the
            # rate leaves it out. CPU time holds on a noisy machine where the rate does not.
            gateway.wait_for(1, timeout=120.0, every=0.02)
            cpu_at_first = cpu_seconds(worker.pid)
            arrived = gateway.wait_for(count, timeout=max(120.0, count / 5), every=0.02)
            cpu_at_last = cpu_seconds(worker.pid)
            ended = time.monotonic()
            # The row is marked `sent` once the gateway's answer is back: give it a moment.
            sent = asyncio.run(sent_count(settings))
            deadline = time.monotonic() + 30
            while sent < count and time.monotonic() < deadline:
                time.sleep(0.2)
                sent = asyncio.run(sent_count(settings))
        finally:
            stop(worker)
        records = gateway.dump()
    times = sorted(a for a, _, _ in records)
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "notifications": count,
        "sent": sent,
        "gateway_requests": arrived,
        "duplicates_at_gateway": arrived - len({r for _, _, r in records}),
        "seconds_first_to_last": round(times[-1] - times[0], 3) if times else None,
        "notifications_per_second": round(steady, 1),
        "seconds_including_worker_start": round(ended - began, 3),
        "notifications_per_second_including_start": round(arrived / (ended - began), 1),
        "worker_cpu_ms_per_notification": round(
            (cpu_at_last - cpu_at_first) * 1000 / max(arrived - 1, 1), 3
        ),
        "worker_max_jobs": settings.worker_max_jobs,
        "worker_poll_delay_seconds": settings.worker_poll_delay_seconds,
        "gateway_delay_ms": delay_ms,
    }


# The no-op ceiling ---------------------------------------------------------------------------

_DONE: list[float] = []


async def _noop(ctx: dict[str, Any], notification_id: str, **kwargs: Any) -> None:
    _DONE.append(time.monotonic())


def noop_worker(redis_url: str, queue_name: str, *, lean: bool = False) -> None:
    """Child process: callback's arq settings with a function that does nothing, burst mode;
    arq's `Worker`, or `lean` the class `ringback worker` runs."""
    from arq import func as arq_func

    from services.callback.worker import close_worker, worker_settings

    settings = _settings("postgresql://unused/unused", redis_url, queue_name, "http://unused")
    kwargs = worker_settings(settings)
    original = kwargs["functions"][0]
    kwargs.update(
        functions=[
            arq_func(
                _noop,
                name=SEND_NOTIFICATION,
                max_tries=original.max_tries,
                timeout=original.timeout_s,
                keep_result=0,
            )
        ],
        cron_jobs=[],
        on_startup=None,
        on_shutdown=None,
        burst=True,
        handle_signals=False,
    )

    async def run() -> None:
        from arq import Worker

        from shared.job_start import LeanWorker

        worker = (LeanWorker if lean else Worker)(**kwargs)
        try:
            await worker.main()
        finally:
            await close_worker(worker)

    asyncio.run(run())
    print(json.dumps({"jobs": len(_DONE), "first": min(_DONE), "last": max(_DONE)}))


def measure_noop(redis_url: str, count: int, *, lean: bool = False) -> dict[str, Any]:
    queue_name = f"ringback:bench:noop:{secrets.token_hex(4)}"
    settings = _settings("postgresql://unused/unused", redis_url, queue_name, "http://unused")
    ids = [new_id() for _ in range(count)]

    async def enqueue() -> None:
        pool = create_redis(settings)
        await ArqNotificationQueue(pool, queue_name=queue_name).enqueue_notifications(ids)
        await pool.aclose(close_connection_pool=True)

    asyncio.run(enqueue())
    began = time.monotonic()
    done = subprocess.run(
        [SERVICE_PYTHON, __file__, "--noop-worker", redis_url, queue_name]
        + (["lean"] if lean else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=max(300.0, count / 5),
    )
    ended = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"the no-op worker failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    span = figures["last"] - figures["first"]
    return {
        "jobs": figures["jobs"],
        "seconds_first_to_last": round(span, 3),
        "jobs_per_second": round((figures["jobs"] - 1) / span, 1) if span > 0 else 0.0,
        "seconds_including_worker_start": round(ended - began, 3),
        "worker_max_jobs": settings.worker_max_jobs,
        "worker_poll_delay_seconds": settings.worker_poll_delay_seconds,
    }


def main() -> None:
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--noop-worker":
        noop_worker(sys.argv[2], sys.argv[3], lean=sys.argv[4:] == ["lean"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--gateway-delays-ms", default="0,100")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    delays = [float(x) for x in args.gateway_delays_ms.split(",")]
    result: dict[str, Any] = {}
    for number, delay in enumerate(delays):
        key = "notifications" if number == 0 else f"notifications_gateway_{delay:g}ms"
        with (
            scratch_database(["callback"]) as database,
            scratch_redis() as redis_url,
            tempfile.TemporaryDirectory() as logs,
        ):
            result[key] = measure_worker(database, redis_url, args.count, Path(logs), delay)
            if number == 0:
                result["arq_noop_ceiling"] = measure_noop(redis_url, args.count)
                result["lean_noop_ceiling"] = measure_noop(redis_url, args.count, lean=True)
    ceiling = result["arq_noop_ceiling"]["jobs_per_second"]
    for number, delay in enumerate(delays):
        suffix = "" if number == 0 else f"_gateway_{delay:g}ms"
        rate = result[f"notifications{suffix}"]["notifications_per_second"]
        result[f"ratio_to_arq_noop{suffix}"] = round(rate / ceiling, 3) if ceiling else None
    write_results(results_path("notifications", args.out), result)


if __name__ == "__main__":
    main()
