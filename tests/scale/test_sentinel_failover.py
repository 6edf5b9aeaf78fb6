"""Redis Sentinel: the master killed with callbacks in flight; the replica takes over.

Every process reaches Redis through `RINGBACK_REDIS_URL=redis+sentinel://...`. Missed calls
arrive steadily and the SMS gateway is slow, so confirmations are queued and being sent when
the master is killed (SIGKILL). The sentinel promotes the replica; jobs the master had not yet
passed on are lost with it, and the sweeper enqueues their work again from the database.

What must hold: every caller gets exactly one confirmation (one notification id per number),
the intake answers every call, and the worker process is still running at the end. How long
recovery took is printed, not asserted: the sentinel's promotion, and the first confirmation
of a call made after the kill.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.gateways import SmsGateway, SmtpInbox, sms_gateway
from tests.support.sentinel import SentinelSet, sentinel_set
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SECRET = new_secret()
CALLS = 30
KILL_AFTER = 12
INTERVAL = 0.3
SEND_DELAY = 0.3
# The sweeper runs twice a minute and takes an owed confirmation after 10 s: lost jobs are
# found within about 40 s; generous for a shared 2-core machine.
SETTLE_SECONDS = 150.0


def phone(i: int) -> str:
    return f"+35840767{i:04d}"


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with sentinel_set() as running:
        yield running


@pytest.fixture
def slow_gateway() -> Iterator[SmsGateway]:
    with sms_gateway(delay=SEND_DELAY) as gateway:
        yield gateway


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    sentinels: SentinelSet,
    slow_gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_REDIS_URL": sentinels.url,
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        **delivering_to(slow_gateway, inbox, tmp_path / "sink"),
        # A send that fails for a passing reason (a loaded machine) is tried again within a
        # second, not after the default 30 s and more, which would outlast the test's wait.
        "RINGBACK_NOTIFICATION_BACKOFF_BASE_SECONDS": "0.2",
        "RINGBACK_NOTIFICATION_BACKOFF_CAP_SECONDS": "1",
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def test_the_queue_survives_losing_its_redis_master(
    stack: Stack, sentinels: SentinelSet, slow_gateway: SmsGateway
) -> None:
    killed_at = promoted_at = 0.0
    sent_at: dict[str, float] = {}
    arrived_at: dict[str, float] = {}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=10, limits=limits) as intake:
        for i in range(CALLS):
            if i == KILL_AFTER:
                with slow_gateway.lock:
                    in_flight = slow_gateway.arrived - len(slow_gateway.requests)
                sentinels.kill("master")
                killed_at = time.monotonic()
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            event = call_event(
                call_id=f"sentinel-call-{i}", occurred_at=now, **{"from": f"040 767 {i:04d}"}
            )
            body = body_of(event)
            answer = await intake.post(
                "/v1/webhooks/generic", content=body, headers=signed_headers(SECRET, body)
            )
            assert answer.status_code == 202, answer.text
            sent_at[phone(i)] = time.monotonic()
            if killed_at and not promoted_at:
                if await asyncio.to_thread(sentinels.master_port) == sentinels.ports["replica"]:
                    promoted_at = time.monotonic()
            await asyncio.sleep(INTERVAL)

    phones = {phone(i) for i in range(CALLS)}
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        with slow_gateway.lock:
            for request in slow_gateway.requests:
                arrived_at.setdefault(request.json()["to"], time.monotonic())
        if not promoted_at and sentinels.master_port() == sentinels.ports["replica"]:
            promoted_at = time.monotonic()
        if set(arrived_at) == phones:
            break
        assert time.monotonic() < deadline, (
            f"no SMS to {sorted(phones - set(arrived_at))}; worker running: "
            f"{stack.processes['worker'].poll() is None}; master now on port "
            f"{sentinels.master_port()} (replica {sentinels.ports['replica']})\n"
            f"--- sentinel\n{sentinels.log('sentinel')}\n--- worker\n{stack.tail('worker', 80)}"
            f"\n--- callback\n{stack.tail('callback', 40)}"
        )
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # a second confirmation would arrive now

    with slow_gateway.lock:
        requests = [r.json() for r in slow_gateway.requests]
    ids_by_phone: dict[str, set[str]] = defaultdict(set)
    for body in requests:
        ids_by_phone[body["to"]].add(body["reference"])
    assert sorted(ids_by_phone) == sorted(phones)
    assert {p: ids for p, ids in ids_by_phone.items() if len(ids) > 1} == {}
    assert stack.processes["worker"].poll() is None, stack.tail("worker")
    assert sentinels.master_port() == sentinels.ports["replica"]

    after_kill = [arrived_at[p] for p, t in sent_at.items() if t >= killed_at]
    print(  # noqa: T201 - the recovery figures, visible with -s
        f"\nsentinel failover: {CALLS} calls, master killed after {KILL_AFTER} with "
        f"{in_flight} SMS sends in flight; replica promoted "
        f"{promoted_at - killed_at:.1f} s after the kill; first confirmation of a call made "
        f"after the kill {min(after_kill) - killed_at:.1f} s after it, the last "
        f"{max(arrived_at.values()) - killed_at:.1f} s after it; {len(phones)} SMS, lost 0, "
        f"duplicated 0, re-sent under the same id {len(requests) - len(phones)}"
    )
