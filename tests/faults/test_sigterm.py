"""SIGTERM, as a deploy sends it: running work finishes or is handed back, nothing is lost.

- The worker gets SIGTERM with 12 sends in flight and a 3 s grace period: 6 SMS through a
  gateway that answers in 1.5 s (they finish within the grace period) and 6 emails through an
  SMTP server that answers in 8 s (they cannot). It must exit soon after the grace period;
  the SMS are recorded `sent`; the emails are handed back: their jobs stay queued in Redis and
  their rows give up the send lease at once (not after the 120 s lease), so a new worker
  started afterwards sends them straight away. Nobody gets a second message for the same
  notification, nor a second notification.
- Intake gets SIGTERM during a burst of signed webhooks: every request answered 2xx is stored
  (uvicorn drains in-flight requests before the process exits).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.models import Notification
from services.callback.settings import CallbackSettings
from services.intake.models import Inbound
from tests.conftest import serve_asgi
from tests.support.gateways import SmsGateway, SmtpInbox, sms_gateway, smtp_server
from tests.support.infra import ROOT
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(150)

CUSTOMERS = 6
SMS_DELAY = 1.5
EMAIL_DELAY = 8.0
GRACE_SECONDS = 3
# After the grace period: handing jobs back (Redis, PostgreSQL) and closing, on a busy machine.
EXIT_SLACK_SECONDS = 5.0


@pytest.fixture
def slow_gateway() -> Iterator[SmsGateway]:
    with sms_gateway(delay=SMS_DELAY) as gateway:
        yield gateway


@pytest.fixture
def slow_smtp() -> Iterator[SmtpInbox]:
    with smtp_server(delay=EMAIL_DELAY) as inbox:
        yield inbox


@pytest.fixture
async def api(settings_kwargs: dict[str, Any], clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve_asgi(create_app(CallbackSettings(**settings_kwargs))):
        yield client


def _worker_env(base_env: dict[str, str], gateway: SmsGateway, inbox: SmtpInbox) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env.update(base_env)
    env.update(
        {
            "RINGBACK_SMS_PROVIDER": "http",
            "RINGBACK_SMS_HTTP_URL": f"{gateway.url}/v1/messages",
            "RINGBACK_EMAIL_PROVIDER": "smtp",
            "RINGBACK_SMTP_HOST": inbox.host,
            "RINGBACK_SMTP_PORT": str(inbox.port),
            "RINGBACK_SMTP_STARTTLS": "false",
            "RINGBACK_EMAIL_FROM": "asiakaspalvelu@example.fi",
            "RINGBACK_OUTBOX_RELAY": "false",
            "RINGBACK_WORKER_MAX_JOBS": str(2 * CUSTOMERS),
            "RINGBACK_WORKER_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
            "RINGBACK_NOTIFICATION_TIMEOUT_SECONDS": "10",
            # Long: a row left `sending` by a worker that did not hand it back would wait this
            # long, so the second worker finishing quickly shows the hand-back happened.
            "RINGBACK_NOTIFICATION_LEASE_SECONDS": "120",
            "RINGBACK_NOTIFICATION_BACKOFF_BASE_SECONDS": "0.2",
            "RINGBACK_NOTIFICATION_BACKOFF_CAP_SECONDS": "1",
            "RINGBACK_LOG_LEVEL": "INFO",
        }
    )
    return env


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _notifications(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    return {i: status for i, (_, status, _) in (await _rows(sessions)).items()}


async def _rows(
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, tuple[str, str, datetime]]:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    Notification.id,
                    Notification.channel,
                    Notification.status,
                    Notification.next_attempt_at,
                )
            )
        ).all()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def _wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


async def test_sigterm_hands_unfinished_sends_back_and_a_new_worker_completes_them(
    api: httpx.AsyncClient,
    internal_key: str,
    base_env: dict[str, str],
    slow_gateway: SmsGateway,
    slow_smtp: SmtpInbox,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    auth = {"Authorization": f"Bearer {internal_key}"}
    for i in range(CUSTOMERS):
        response = await api.post(
            "/v1/callbacks",
            json={
                "request_id": f"sigterm-{i}",
                "source": "missed_call",
                "channel": "phone",
                "first_contact_at": datetime.now(UTC).isoformat(),
                "phone": f"+3584060{i:05d}",
                "email": f"sigterm{i}@example.fi",
                "language": "fi",
            },
            headers=auth,
        )
        assert response.status_code == 201, response.text
    env = _worker_env(base_env, slow_gateway, slow_smtp)
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    try:
        # Every send has reached its server, none is answered yet, when SIGTERM arrives.
        async def all_in_flight() -> bool:
            with slow_gateway.lock, slow_smtp.lock:
                return slow_gateway.arrived + slow_smtp.arrived >= 2 * CUSTOMERS

        await _wait_for(all_in_flight, 60, "every send in flight")
        terminated = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        with slow_gateway.lock:
            answered_before_signal = len(slow_gateway.requests)
        code = await asyncio.to_thread(worker.wait, GRACE_SECONDS + EXIT_SLACK_SECONDS)
        stopped = time.monotonic() - terminated
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert code == 0, log.read_text()[-3000:]
    assert stopped <= GRACE_SECONDS + EXIT_SLACK_SECONDS, stopped

    assert answered_before_signal < CUSTOMERS, "some SMS were still in flight at the signal"
    after = await _rows(sessions)
    now = datetime.now(UTC)
    # The SMS finished within the grace period and are recorded sent.
    sms_rows = [row for row in after.values() if row[0] == "sms"]
    assert [status for _, status, _ in sms_rows] == ["sent"] * CUSTOMERS, sms_rows
    # The emails were handed back: not sent, and their send lease released (not 120 s ahead).
    email_rows = [row for row in after.values() if row[0] == "email"]
    assert len(email_rows) == CUSTOMERS
    for _, status, next_attempt_at in email_rows:
        assert status in {"sending", "queued", "failed"}, status
        assert next_attempt_at <= now + timedelta(seconds=5), (status, next_attempt_at, now)
    with slow_smtp.lock:
        assert not slow_smtp.messages, "an email cut off by the grace period was delivered"

    # A new worker completes the emails, long before the 120 s lease would have run out.
    second = _start_worker(env, log)
    try:

        async def all_sent() -> bool:
            return set((await _notifications(sessions)).values()) == {"sent"}

        await _wait_for(all_sent, 60, "every handed-back email sent by a new worker")
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)

    with slow_gateway.lock:
        sms = [r.json() for r in slow_gateway.requests]
    with slow_smtp.lock:
        emails = list(slow_smtp.messages)
    # One notification per recipient and channel, each delivered exactly once.
    sms_ids: dict[str, set[str]] = {}
    for body in sms:
        sms_ids.setdefault(body["to"], set()).add(body["reference"])
    email_ids: dict[str, set[str]] = {}
    for message in emails:
        email_ids.setdefault(str(message["To"]), set()).add(str(message["Message-ID"]))
    assert len(sms_ids) == CUSTOMERS
    assert all(len(v) == 1 for v in sms_ids.values())
    assert len(email_ids) == CUSTOMERS
    assert all(len(v) == 1 for v in email_ids.values())
    deliveries = Counter(b["reference"] for b in sms) + Counter(
        str(m["Message-ID"]) for m in emails
    )
    assert set(deliveries.values()) == {1}, deliveries
    print(  # noqa: T201 - the figures, visible with -s
        f"\nworker sigterm: {2 * CUSTOMERS} sends in flight, exited {code} {stopped:.1f} s after "
        f"SIGTERM (grace {GRACE_SECONDS} s); {len(sms_rows)} SMS finished and recorded sent, "
        f"{len(email_rows)} emails handed back and sent by a new worker; "
        f"{len(sms)} SMS and {len(emails)} emails delivered (duplicated 0, lost 0)"
    )


SECRET = new_secret()
BURST = 300


@pytest.fixture
def intake(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    extra = {"RINGBACK_WEBHOOK_SECRETS": SECRET, "RINGBACK_LOG_LEVEL": "WARNING"}
    with running_stack(base_env, tmp_path / "logs", extra, ("intake",)) as running:
        yield running


async def test_intake_sigterm_during_a_burst_stores_every_webhook_it_answered(
    intake: Stack, sessions: async_sessionmaker[AsyncSession]
) -> None:
    answers: list[httpx.Response | None] = [None] * BURST
    limit = asyncio.Semaphore(30)
    answered = asyncio.Event()
    async with httpx.AsyncClient(base_url=intake.url("intake"), timeout=30) as client:

        async def one(i: int) -> None:
            body = body_of(call_event(call_id=f"drain-{i}", **{"from": f"+35840{3_000_000 + i}"}))
            async with limit:
                try:
                    answers[i] = await client.post(
                        "/v1/webhooks/generic", content=body, headers=signed_headers(SECRET, body)
                    )
                except httpx.HTTPError:
                    return  # refused or cut off: not acknowledged, the sender retries
            if sum(a is not None for a in answers) >= 50:
                answered.set()

        burst = asyncio.gather(*(one(i) for i in range(BURST)))
        # Mid-burst: requests are in flight when the signal lands.
        await asyncio.wait_for(answered.wait(), timeout=60)
        process = intake.processes["intake"]
        process.send_signal(signal.SIGTERM)
        await burst
        code = await asyncio.to_thread(process.wait, 30)
    # uvicorn exits by re-raising the signal once it has shut down gracefully.
    assert code in (0, -signal.SIGTERM), intake.tail("intake")

    accepted = {a.json()["id"] for a in answers if a is not None and a.is_success}
    refused = [a.status_code for a in answers if a is not None and not a.is_success]
    unanswered = sum(a is None for a in answers)
    assert not refused, refused
    assert unanswered > 0, "the signal landed before the burst was over"
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Inbound).where(Inbound.id.in_(accepted))
        )
    assert stored == len(accepted)
    print(  # noqa: T201
        f"\nintake sigterm: {BURST} posted, {len(accepted)} answered 202 and all stored, "
        f"{unanswered} refused at the socket after the signal (not acknowledged)"
    )
