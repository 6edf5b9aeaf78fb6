"""SIGKILL the real worker process 20 times in a row while it confirms 200 callbacks.

Each of the 200 customers has a phone and an email, so 400 confirmations go out: SMS through a
real HTTP gateway, email through a real SMTP server, both slow (0.3 s per message) so that sends
are in flight when a kill lands. The worker is started, and as soon as a new send reaches either
server it is killed without warning (SIGKILL), 20 times; the last one is left to finish.

What must hold: every customer ends with exactly one confirmation per channel (one notification
id per number and per address), every notification is `sent` (lost = 0), and no customer gets
two different confirmations (duplicated = 0).

A send cut off after the server took it is re-sent under the same notification id (SMS:
`reference` and `Idempotency-Key`; email: the `Message-ID`), which a gateway that honours the
key drops; our test servers do not dedupe, so such re-sends are counted and printed separately,
and bounded: only a send in flight when a kill landed can go out twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.models import Notification
from services.callback.settings import CallbackSettings
from tests.conftest import serve_asgi
from tests.support.gateways import SmsGateway, SmtpInbox, sms_gateway, smtp_server
from tests.support.infra import ROOT

CUSTOMERS = 200
KILLS = 20
MAX_JOBS = 10
SEND_DELAY = 0.3
# Generous for a shared 2-core machine; the run prints what it actually took.
FINISH_SECONDS = 120.0

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def slow_gateway() -> Iterator[SmsGateway]:
    with sms_gateway(delay=SEND_DELAY) as gateway:
        yield gateway


@pytest.fixture
def slow_smtp() -> Iterator[SmtpInbox]:
    with smtp_server(delay=SEND_DELAY) as inbox:
        yield inbox


@pytest.fixture
def worker_env(
    base_env: dict[str, str], slow_gateway: SmsGateway, slow_smtp: SmtpInbox
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env.update(base_env)
    env.update(
        {
            "RINGBACK_SMS_PROVIDER": "http",
            "RINGBACK_SMS_HTTP_URL": f"{slow_gateway.url}/v1/messages",
            "RINGBACK_EMAIL_PROVIDER": "smtp",
            "RINGBACK_SMTP_HOST": slow_smtp.host,
            "RINGBACK_SMTP_PORT": str(slow_smtp.port),
            "RINGBACK_SMTP_STARTTLS": "false",
            "RINGBACK_EMAIL_FROM": "asiakaspalvelu@example.fi",
            "RINGBACK_OUTBOX_RELAY": "false",
            "RINGBACK_WORKER_MAX_JOBS": str(MAX_JOBS),
            # A send cut off by a kill counts against its budget (a worker that crashes on
            # one message must not loop on it for ever; tests/callback covers the dead
            # letter). Twenty kills can cut off the same send many times over, more so on a
            # loaded machine where few sends finish between kills, so the budget here is
            # above the number of kills: this test is about loss and duplicates.
            "RINGBACK_NOTIFICATION_MAX_TRIES": str(KILLS + 10),
            # Short leases so sends cut off by a kill are taken over within seconds.
            "RINGBACK_NOTIFICATION_TIMEOUT_SECONDS": "2",
            "RINGBACK_NOTIFICATION_LEASE_SECONDS": "3",
            "RINGBACK_JOB_TIMEOUT_SECONDS": "2",
            "RINGBACK_NOTIFICATION_BACKOFF_BASE_SECONDS": "0.2",
            "RINGBACK_NOTIFICATION_BACKOFF_CAP_SECONDS": "1",
            "RINGBACK_LOG_LEVEL": "WARNING",
        }
    )
    return env


@pytest.fixture
async def api(settings_kwargs: dict[str, Any], clean_db: None) -> AsyncIterator[AsyncClient]:
    async for client in serve_asgi(create_app(CallbackSettings(**settings_kwargs))):
        yield client


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _statuses(sessions: async_sessionmaker[AsyncSession]) -> dict[str, tuple[str, str]]:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Notification.id, Notification.channel, Notification.status)
            )
        ).all()
    return {row[0]: (row[1], row[2]) for row in rows}


def _arrived(gateway: SmsGateway, inbox: SmtpInbox) -> int:
    with gateway.lock, inbox.lock:
        return gateway.arrived + inbox.arrived


async def test_killing_the_worker_mid_send_never_sends_a_customer_two_messages(
    api: AsyncClient,
    internal_key: str,
    worker_env: dict[str, str],
    slow_gateway: SmsGateway,
    slow_smtp: SmtpInbox,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    auth = {"Authorization": f"Bearer {internal_key}"}
    phones = [f"+3584050{i:05d}" for i in range(CUSTOMERS)]
    emails = [f"asiakas{i}@example.fi" for i in range(CUSTOMERS)]
    limit = asyncio.Semaphore(8)

    async def create(i: int) -> None:
        async with limit:
            response = await api.post(
                "/v1/callbacks",
                json={
                    "request_id": f"kill-test-{i}",
                    "source": "missed_call",
                    "channel": "phone",
                    # Now: an old first contact would be past its SLA deadline and expire.
                    "first_contact_at": datetime.now(UTC).isoformat(),
                    "phone": phones[i],
                    "email": emails[i],
                    "language": "fi",
                },
                headers=auth,
            )
        assert response.status_code == 201, response.text

    await asyncio.gather(*(create(i) for i in range(CUSTOMERS)))

    log = tmp_path / "worker.log"
    kills = 0
    started = time.monotonic()
    worker = _start(worker_env, log)
    statuses: dict[str, tuple[str, str]] = {}
    try:
        while kills < KILLS:
            # Wait for this worker's first send to reach a server, then kill it mid-job.
            seen = _arrived(slow_gateway, slow_smtp)
            deadline = time.monotonic() + 60
            while _arrived(slow_gateway, slow_smtp) == seen:
                assert time.monotonic() < deadline, (
                    f"no send after kill {kills}:\n" + (log.read_text()[-3000:])
                )
                assert worker.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.02)
            await asyncio.sleep(random.uniform(0.0, SEND_DELAY))
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            kills += 1
            worker = _start(worker_env, log)
        deadline = time.monotonic() + FINISH_SECONDS
        while time.monotonic() < deadline:
            statuses = await _statuses(sessions)
            if len(statuses) == 2 * CUSTOMERS and {s for _, s in statuses.values()} == {"sent"}:
                break
            await asyncio.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    elapsed = time.monotonic() - started

    assert len(statuses) == 2 * CUSTOMERS, log.read_text()[-3000:]
    not_sent = {i: s for i, s in statuses.items() if s[1] != "sent"}
    assert not not_sent, f"lost: {len(not_sent)} {not_sent}"
    ids = {
        channel: {i for i, s in statuses.items() if s[0] == channel} for channel in ("sms", "email")
    }

    with slow_gateway.lock:
        sms_requests = list(slow_gateway.requests)
    sms_ids_by_phone: dict[str, set[str]] = defaultdict(set)
    sms_deliveries: dict[str, int] = defaultdict(int)
    for request in sms_requests:
        body = request.json()
        assert request.headers["idempotency-key"] == body["reference"]
        sms_ids_by_phone[body["to"]].add(body["reference"])
        sms_deliveries[body["reference"]] += 1

    with slow_smtp.lock:
        messages = list(slow_smtp.messages)
    email_ids_by_address: dict[str, set[str]] = defaultdict(set)
    email_deliveries: dict[str, int] = defaultdict(int)
    for message in messages:
        notification_id = str(message["Message-ID"]).strip("<>").split("@")[0]
        notification_id = notification_id.removeprefix("notification.")
        email_ids_by_address[str(message["To"])].add(notification_id)
        email_deliveries[notification_id] += 1

    # Every customer got a confirmation on each channel, and only one: one id per recipient.
    assert sorted(sms_ids_by_phone) == sorted(phones)
    assert sorted(email_ids_by_address) == sorted(emails)
    duplicated = sum(
        len(refs) - 1 for refs in [*sms_ids_by_phone.values(), *email_ids_by_address.values()]
    )
    assert duplicated == 0
    assert set(sms_deliveries) == ids["sms"]
    assert set(email_deliveries) == ids["email"]
    resent_sms = sum(count - 1 for count in sms_deliveries.values())
    resent_email = sum(count - 1 for count in email_deliveries.values())
    # Only a send in flight when a kill landed can go out twice. A job has at most one send
    # per channel in flight (the booking job sends its SMS and its email together), so at
    # most max_jobs per channel per kill; a bound on the two together was crossed by a run
    # with 197 SMS and 7 emails re-sent, each channel within its own.
    assert resent_sms <= KILLS * MAX_JOBS
    assert resent_email <= KILLS * MAX_JOBS
    print(  # noqa: T201 - the figures the brief asks for, visible with -s
        f"\nworker kill: {KILLS} kills, {CUSTOMERS} customers, "
        f"{len(ids['sms'])} SMS and {len(ids['email'])} emails sent, lost 0, duplicated 0; "
        f"server-level re-sends under the same id after a kill: {resent_sms} SMS "
        f"({len(sms_requests)} gateway requests), {resent_email} email "
        f"({len(messages)} SMTP messages); {elapsed:.1f} s"
    )
