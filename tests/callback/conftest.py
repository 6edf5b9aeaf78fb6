"""Callback's fixtures: a real SMTP server, a real HTTP SMS gateway, the app and a burst worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from arq import Worker
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import creation
from services.callback.app import create_app
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Callback, CallbackOutbox, Notification
from services.callback.settings import CallbackSettings
from services.callback.worker import close_worker, create_worker
from shared.db import commit
from shared.service_app import create_redis
from tests.conftest import serve_asgi
from tests.support.infra import free_port

# ----------------------------------------------------------------------------- SMS gateway


@dataclass
class GatewayRequest:
    """One request the gateway received, as it arrived on the wire."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class SmsGateway:
    """A real HTTP server standing in for the SMS provider; can be told to fail."""

    url: str = ""
    requests: list[GatewayRequest] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()

    def _answer(self, request: GatewayRequest) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            if self._failures:
                status = self._failures.pop(0)
                return status, {"error": f"told to answer {status}"}
        if request.path.endswith("/Messages.json"):
            return 201, {"sid": f"SM{number:032d}", "status": "queued"}
        return 202, {"id": f"gw-{number}"}


def _handler(gateway: SmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            request = GatewayRequest(
                method="POST",
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, answer = gateway._answer(request)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def _gateway_server() -> Iterator[SmsGateway]:
    gateway = SmsGateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gateway))
    server.daemon_threads = True
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gateway
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def gateway(_gateway_server: SmsGateway) -> SmsGateway:
    _gateway_server.reset()
    return _gateway_server


# ----------------------------------------------------------------------------- SMTP server


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    """An in-process aiosmtpd server collecting every message it accepts."""

    port: int = 0
    messages: list[ReceivedMail] = field(default_factory=list)
    reply: str = "250 Message accepted for delivery"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            content = envelope.original_content or envelope.content
            self.messages.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(content))
            )
        return self.reply


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpServer]:
    smtp = SmtpServer(port=free_port())
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp.port)
    controller.start()
    yield smtp
    controller.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpServer) -> SmtpServer:
    _smtp_server.messages.clear()
    _smtp_server.reply = "250 Message accepted for delivery"
    return _smtp_server


# ----------------------------------------------------------------------------- app and worker


@pytest.fixture
def settings(
    settings_kwargs: dict[str, Any], gateway: SmsGateway, smtp: SmtpServer, tmp_path: Path
) -> CallbackSettings:
    """Callback pointed at this run's database, Redis, gateway and SMTP server."""
    return CallbackSettings(
        **settings_kwargs,
        public_base_url="https://asiointi.example.fi",
        sms_provider="http",
        sms_http_url=f"{gateway.url}/sms",
        sms_sender="Palvelu",
        email_provider="smtp",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        email_from="Asiakaspalvelu <palvelu@example.fi>",
        sink_dir=tmp_path / "sink",
        notification_backoff_base_seconds=0.05,
        notification_backoff_cap_seconds=0.2,
        outbox_relay=False,
    )


@pytest.fixture
async def client(settings: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for http in serve_asgi(create_app(settings)):
        yield http


@pytest.fixture
def auth(internal_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {internal_key}"}


RunWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
def run_worker(settings: CallbackSettings) -> RunWorker:
    """Run the real worker in burst mode: every due job, then stop."""

    async def run(custom: CallbackSettings | None = None, **overrides: Any) -> Worker:
        # arq's burst mode waits for deferred jobs too (a reminder due tomorrow): run them
        # now instead. A send found not yet due does nothing; its row waits for the sweeper.
        redis = aioredis.Redis.from_url(settings.require_redis_url())
        now_ms = time.time() * 1000
        deferred = await redis.zrangebyscore(settings.queue_name, now_ms, "+inf")
        if deferred:
            await redis.zadd(settings.queue_name, dict.fromkeys(deferred, now_ms))
        await redis.aclose()
        worker = create_worker(
            custom or settings, burst=True, poll_delay=0, handle_signals=False, **overrides
        )
        try:
            await worker.main()
        finally:
            await close_worker(worker)
        return worker

    return run


# ----------------------------------------------------------------------------- reading state


@pytest.fixture
def read_notifications(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[..., Awaitable[list[Notification]]]:
    async def read(callback_id: str | None = None) -> list[Notification]:
        async with sessions() as session:
            query = select(Notification).order_by(Notification.channel.desc())
            if callback_id is not None:
                query = query.where(Notification.callback_id == callback_id)
            return list((await session.scalars(query)).all())

    return read


@pytest.fixture
def read_outbox(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[], Awaitable[list[CallbackOutbox]]]:
    async def read() -> list[CallbackOutbox]:
        async with sessions() as session:
            return list(
                (await session.scalars(select(CallbackOutbox).order_by(CallbackOutbox.id))).all()
            )

    return read


ConfirmOwed = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
def confirm_owed(
    settings: CallbackSettings, sessions: async_sessionmaker[AsyncSession]
) -> ConfirmOwed:
    """Run `book_and_confirm` for every callback that is owed a confirmation, as the job does."""

    async def run(now: Any = None) -> dict[str, str]:
        redis = create_redis(settings)
        queue = ArqNotificationQueue(redis)
        results: dict[str, str] = {}
        try:
            async with sessions() as session:
                ids = (
                    await session.scalars(
                        select(Callback.id).where(Callback.confirm_key.is_not(None))
                    )
                ).all()
            for callback_id in ids:
                async with sessions() as session:
                    results[callback_id] = await creation.book_and_confirm(
                        session=session,
                        settings=settings,
                        callback_id=callback_id,
                        queue=queue,
                        now=now,
                    )
                    await commit(session)
        finally:
            await redis.aclose(close_connection_pool=True)
        return results

    return run


@pytest.fixture
async def admin(make_key: Callable[..., Awaitable[str]], clean_db: None) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin')}"}


InsertCallbacks = Callable[..., Awaitable[list[str]]]


@pytest.fixture
def insert_callbacks(sessions: async_sessionmaker[AsyncSession], clean_db: None) -> InsertCallbacks:
    """Put `count` pending ASAP callbacks straight into the table (distinct numbers)."""

    async def insert(count: int, **values: Any) -> list[str]:
        from datetime import UTC, datetime, timedelta

        from shared.ids import new_id

        now = datetime.now(UTC)
        rows = []
        for i in range(count):
            fields: dict[str, Any] = {
                "id": new_id(),
                "phone": f"+3584010{i:05d}",
                "language": "fi",
                "status": "pending",
                "source": "missed_call",
                "channel": "phone",
                "priority": 0,
                "first_contact_at": now,
                "due_at": now,
                "sla_deadline": now + timedelta(hours=2),
                "contact_count": 1,
                "consent_sms": True,
                "consent_email": True,
                "asap": True,
                "booking_seq": 0,
                "attempt_count": 0,
                "created_at": now,
                "updated_at": now,
            }
            fields.update(values)
            rows.append(Callback(**fields))
        async with sessions() as session:
            session.add_all(rows)
            await session.commit()
        return [r.id for r in rows]

    return insert


ReadOutboxFn = Callable[[], Awaitable[list[CallbackOutbox]]]
ReadNotificationsFn = Callable[..., Awaitable[list[Notification]]]
