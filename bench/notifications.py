"""Notifications per second for one worker process sending SMS to a loopback gateway.

Run: `.venv/bin/python bench/notifications.py [count]` (default 2,000). Creates a scratch
database and claims a free Redis database index (as the tests do), writes `count` queued SMS
notifications, enqueues their jobs, starts `ringback worker` (`python -m shared.cli worker`)
against a threaded HTTP gateway on loopback that answers 202 at once, and times until every
row is `sent`. Prints the figures and writes `bench/results/notifications.json`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.callback.models import Callback, Notification  # noqa: E402
from services.callback.queue import ArqNotificationQueue  # noqa: E402
from services.callback.settings import CallbackSettings  # noqa: E402
from shared.db import asyncpg_dsn, create_engine, create_session_factory  # noqa: E402
from shared.ids import new_id  # noqa: E402
from shared.migrate import upgrade  # noqa: E402
from shared.service_app import create_redis  # noqa: E402


class Gateway:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with gateway.lock:
                    gateway.count += 1
                    number = gateway.count
                payload = json.dumps({"id": f"gw-{number}"}).encode()
                self.send_response(202)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _claim_redis(base: str) -> tuple[str, int]:
    control = redis.Redis.from_url(base)
    try:
        for index in range(1, 16):
            if control.set(f"ringback:test-db:{index}", os.getpid(), nx=True, ex=3600):
                return base.rsplit("/", 1)[0] + f"/{index}", index
    finally:
        control.close()
    raise RuntimeError("no free Redis database index")


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


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    admin = os.environ.get(
        "RINGBACK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_base = os.environ.get("RINGBACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    database_url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    redis_url, index = _claim_redis(redis_base)
    gateway = Gateway()
    queue_name = f"ringback:bench:{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env.update(
        {
            "RINGBACK_DATABASE_URL": database_url,
            "RINGBACK_REDIS_URL": redis_url,
            "RINGBACK_QUEUE_NAME": queue_name,
            "RINGBACK_SMS_PROVIDER": "http",
            "RINGBACK_SMS_HTTP_URL": gateway.url,
            "RINGBACK_OUTBOX_RELAY": "false",
            "RINGBACK_LOG_LEVEL": "WARNING",
            "RINGBACK_SELF_SERVICE_SECRET": "bench",
        }
    )
    settings = CallbackSettings(
        database_url=database_url,
        redis_url=redis_url,
        queue_name=queue_name,
        sms_provider="http",
        sms_http_url=gateway.url,
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        upgrade(database_url, ["callback"])
        asyncio.run(prepare(settings, count))
        began = time.perf_counter()
        worker = subprocess.Popen([sys.executable, "-m", "shared.cli", "worker"], env=env, cwd=ROOT)
        sent = 0
        deadline = time.monotonic() + 600
        while sent < count and time.monotonic() < deadline:
            time.sleep(0.2)
            sent = asyncio.run(sent_count(settings))
        elapsed = time.perf_counter() - began
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        gateway.server.shutdown()
        redis.Redis.from_url(redis_url).flushdb()
        control = redis.Redis.from_url(redis_base)
        control.delete(f"ringback:test-db:{index}")
        control.close()
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    result = {
        "notifications": count,
        "sent": sent,
        "gateway_requests": gateway.count,
        "seconds_including_worker_start": round(elapsed, 3),
        "notifications_per_second": round(sent / elapsed, 1),
        "worker_max_jobs": settings.worker_max_jobs,
        "worker_poll_delay_seconds": settings.worker_poll_delay_seconds,
    }
    out = ROOT / "bench" / "results" / "notifications.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>32}: {value}")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
