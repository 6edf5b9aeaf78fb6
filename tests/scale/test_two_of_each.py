"""Two of every process under a steady stream of missed calls, one of each pair killed mid-run.

Two intakes, two callback APIs, two histories, two workers and two relays share one database
and one Redis; each API sits behind a round-robin (`tests.support.pairs`), which is also
where the services reach each other. Missed calls arrive one after another; while they do,
one process of each pair is killed without warning (SIGKILL) and started again. A telephony
system retries a webhook that got no answer, with the same webhook-id, and so does this test.

What must hold afterwards:
- every caller got exactly one SMS confirmation (one notification id per number): 0 lost, 0
  duplicated; a send cut off by the worker's kill may reach the gateway twice under the same
  id (which a gateway honouring the Idempotency-Key drops): counted and printed;
- every outbox row was delivered, and each had its effect once: one callback per caller, and
  one `missed_call`, `callback_created` and `notification_sent` event per customer;
- live streams on both history instances (reconnecting with Last-Event-ID, as a browser
  does) saw every one of their customer's events, once and in order;
- agents claiming through both callback APIs at once are each handed different callbacks,
  and every callback is handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.ids import new_id
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.pairs import Pairs, running_pairs
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import delivering_to

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

SECRET = new_secret()
CALLS = 30
INTERVAL = 0.3
# After which call each process is killed, and which instance of it.
KILLS = {
    4: ("intake", 0),
    9: ("callback", 1),
    14: ("history", 0),
    19: ("worker", 1),
    24: ("relay", 0),
}
EXPECTED = ["callback_created", "missed_call", "notification_sent"]
AGENTS = 4
# Generous for a shared 2-core machine; the run prints what it actually took.
SETTLE_SECONDS = 150.0


def phone(i: int) -> str:
    return f"+35840766{i:04d}"


@pytest.fixture
def pairs(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Pairs]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        **delivering_to(gateway, inbox, tmp_path / "sink"),
        # Ten processes on one test database that others share: small pools.
        "RINGBACK_DB_POOL_SIZE": "3",
        # Short leases, so a send cut off by the worker's kill is taken over within seconds.
        "RINGBACK_NOTIFICATION_TIMEOUT_SECONDS": "2",
        "RINGBACK_NOTIFICATION_LEASE_SECONDS": "3",
        "RINGBACK_NOTIFICATION_BACKOFF_BASE_SECONDS": "0.2",
        "RINGBACK_NOTIFICATION_BACKOFF_CAP_SECONDS": "1",
    }
    with running_pairs(base_env, tmp_path / "logs", extra) as running:
        yield running


async def test_two_of_each_with_one_of_each_killed_lose_and_repeat_nothing(
    pairs: Pairs,
    gateway: SmsGateway,
    internal_key: str,
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    started = time.monotonic()
    writer = {"authorization": f"Bearer {await make_key('history:write')}"}
    reader = {"authorization": f"Bearer {await make_key('history:read')}"}
    # Each caller is a known customer, so a stream of theirs can be open before the call.
    customers: dict[int, str] = {}
    seeds: dict[int, str] = {}
    async with httpx.AsyncClient(base_url=pairs.url("history"), headers=writer) as history:
        for i in range(CALLS):
            seeds[i] = new_id()
            seed = {
                "id": seeds[i],
                "occurred_at": "2026-11-24T11:00:00Z",
                "channel": "phone",
                "direction": "inbound",
                "type": "missed_call",
                "customer": {"phone": phone(i)},
                "summary": "Earlier missed call",
                "data": {},
            }
            answer = await history.post("/v1/events", json=seed)
            assert answer.status_code == 201, answer.text
            customers[i] = answer.json()["customer_id"]

    streams = {
        (i, n): _Stream(pairs.own_url("history", n), reader, customers[i])
        for i in range(CALLS)
        for n in range(2)
    }
    async with _streaming(list(streams.values())):
        await _steady_calls(pairs)
        sent_all = time.monotonic()
        phones = {phone(i) for i in range(CALLS)}

        async def settled() -> bool:
            with gateway.lock:
                refs = {r.json()["to"] for r in gateway.requests}
            if refs != phones:
                return False
            return all(len(s.types()) >= len(EXPECTED) for s in streams.values())

        def unsettled() -> str:
            with gateway.lock:
                refs = {r.json()["to"] for r in gateway.requests}
            short = {k: s.types() for k, s in streams.items() if len(s.types()) < len(EXPECTED)}
            return f"no SMS to {sorted(phones - refs)}; streams short of events: {short}"

        await _wait(settled, SETTLE_SECONDS, unsettled)
        settled_at = time.monotonic()
        # Anything late would arrive now: a second confirmation, an event delivered twice.
        await asyncio.sleep(3)

        # Each customer's new events stored once each, and seen by both of their streams.
        async with httpx.AsyncClient(base_url=pairs.url("history"), headers=reader) as history:
            for i, customer in customers.items():
                page = (await history.get(f"/v1/customers/{customer}/timeline")).json()
                new = [item for item in page["items"] if item["id"] != seeds[i]]
                kinds = Counter(str(item["type"]) for item in new)
                assert {kind: kinds[kind] for kind in EXPECTED} == dict.fromkeys(EXPECTED, 1), new
                ids = sorted(str(item["id"]) for item in new)
                for n in range(2):
                    stream = streams[(i, n)]
                    # Other kinds may still be on their way to a stream (a due-soon warning).
                    await _caught_up(stream, ids)
                    assert sorted(stream.ids) == ids, (i, n)

    # One confirmation per caller, under one notification id each.
    with gateway.lock:
        requests = [r.json() for r in gateway.requests]
    ids_by_phone: dict[str, set[str]] = defaultdict(set)
    for body in requests:
        ids_by_phone[body["to"]].add(body["reference"])
    assert sorted(ids_by_phone) == sorted(phones)
    duplicated = {p: refs for p, refs in ids_by_phone.items() if len(refs) > 1}
    assert duplicated == {}
    resent = len(requests) - len(phones)

    # Every outbox row delivered; one callback per caller.
    async with sessions() as session:
        undelivered = 0
        for schema in ("intake", "callback", "history"):
            undelivered += (
                await session.scalar(
                    text(f'SELECT count(*) FROM "{schema}".outbox WHERE delivered_at IS NULL')
                )
                or 0
            )
        redelivered = 0
        for schema in ("intake", "callback"):
            redelivered += (
                await session.scalar(
                    text(f'SELECT count(*) FROM "{schema}".outbox WHERE attempts > 1')
                )
                or 0
            )
        per_phone = Counter(
            (await session.execute(text("SELECT phone FROM callback.callbacks"))).scalars()
        )
    assert undelivered == 0
    assert per_phone == dict.fromkeys(phones, 1)

    claimed = await _claim_through_both(pairs, internal_key)
    handed = Counter(claimed)
    assert [cid for cid, times in handed.items() if times > 1] == []
    async with sessions() as session:
        every = set((await session.execute(text("SELECT id FROM callback.callbacks"))).scalars())
    assert set(handed) == every

    reconnects = sum(s.connects - 1 for s in streams.values())
    print(  # noqa: T201 - the run's figures, visible with -s
        f"\ntwo of each: {CALLS} missed calls, killed and restarted {', '.join(pairs.killed)}; "
        f"{len(phones)} SMS, lost 0, duplicated 0, re-sent under the same id {resent}; "
        f"outbox rows delivered more than once (retried) {redelivered}; "
        f"{len(streams)} live streams, {reconnects} reconnects, every event seen; "
        f"{len(handed)} claims through both APIs, none twice; "
        f"calls sent in {sent_all - started:.1f} s, settled {settled_at - sent_all:.1f} s later; "
        f"round-robin connections "
        + ", ".join(f"{s}: {sorted(b.connections.values())}" for s, b in pairs.balancers.items())
    )


async def _steady_calls(pairs: Pairs) -> None:
    """One missed call every INTERVAL seconds through intake's round-robin, kills on the way."""
    restarts: list[asyncio.Task[None]] = []
    # A connection per call (no keep-alive), so the round-robin spreads calls over both.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=pairs.url("intake"), timeout=10, limits=limits) as intake:
        deliveries = []
        for i in range(CALLS):
            # Now, or the callback would be past its deadline and expire before anyone claims it.
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            event = call_event(
                call_id=f"pair-call-{i}", occurred_at=now, **{"from": f"040 766 {i:04d}"}
            )
            deliveries.append(asyncio.create_task(_deliver(intake, body_of(event))))
            if i in KILLS:
                name, index = KILLS[i]
                restarts.append(
                    asyncio.create_task(asyncio.to_thread(pairs.kill_and_restart, name, index))
                )
            await asyncio.sleep(INTERVAL)
        await asyncio.gather(*deliveries)
    await asyncio.gather(*restarts)


async def _deliver(intake: httpx.AsyncClient, body: bytes) -> None:
    """Send one webhook until it is answered 2xx, the same webhook-id each time."""
    headers = signed_headers(SECRET, body)
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = await intake.post("/v1/webhooks/generic", content=body, headers=headers)
            if answer.status_code < 500:
                assert answer.status_code == 202, answer.text
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "intake answered no retry for 60 s"
        await asyncio.sleep(0.5)


class _Stream:
    """A browser's EventSource on one history instance: reconnects with Last-Event-ID."""

    def __init__(self, url: str, headers: dict[str, str], customer: str) -> None:
        self.url, self.headers, self.customer = url, headers, customer
        self.events: list[dict[str, Any]] = []
        self.last_id: str | None = None
        self.connects = 0
        self.open = asyncio.Event()

    @property
    def ids(self) -> list[str]:
        return [str(e["id"]) for e in self.events]

    def types(self) -> list[str]:
        return [str(e["type"]) for e in self.events]

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=60)) as http:
            while True:
                headers = dict(self.headers)
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    async with http.stream(
                        "GET",
                        f"{self.url}/v1/stream",
                        params={"customer_id": self.customer},
                        headers=headers,
                    ) as response:
                        if response.status_code != 200:
                            await asyncio.sleep(0.5)
                            continue
                        self.connects += 1
                        self.open.set()
                        await self._read(response)
                except httpx.TransportError:
                    await asyncio.sleep(0.5)

    async def _read(self, response: httpx.Response) -> None:
        # As the SSE standard says: a block's id becomes the last event id when the block
        # ends, whether or not it carried data.
        seq: str | None = None
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                seq = line.removeprefix("id:").strip()
            elif line.startswith("data:"):
                self.events.append(json.loads(line.removeprefix("data:")))
            elif line == "" and seq is not None:
                self.last_id, seq = seq, None


@contextlib.asynccontextmanager
async def _streaming(streams: list[_Stream]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(s.run()) for s in streams]
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(s.open.wait() for s in streams))
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait(
    check: Callable[[], Awaitable[bool]], seconds: float, why: Callable[[], str]
) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, why()
        await asyncio.sleep(0.5)


async def _caught_up(stream: _Stream, ids: list[str], seconds: float = 10.0) -> None:
    async def has_all() -> bool:
        return set(ids) <= set(stream.ids)

    await _wait(has_all, seconds, lambda: f"stream {stream.ids}, timeline {ids}")


async def _claim_through_both(pairs: Pairs, internal_key: str) -> list[str]:
    """Agents claim until nothing is left, every other claim through the other callback API.

    Agents not on the roster, so routing holds them to no queue and no language.
    """
    auth = {"Authorization": f"Bearer {internal_key}"}
    agents = [f"agent-{n}" for n in range(AGENTS)]
    limits = httpx.Limits(max_connections=50)
    async with (
        httpx.AsyncClient(base_url=pairs.own_url("callback", 0), limits=limits, timeout=30) as one,
        httpx.AsyncClient(base_url=pairs.own_url("callback", 1), limits=limits, timeout=30) as two,
    ):

        async def claim_all(n: int, agent: str) -> list[str]:
            got: list[str] = []
            for attempt in itertools.count():
                http = (one, two)[(n + attempt) % 2]
                answer = await http.post("/v1/queue/claim", json={"agent_id": agent}, headers=auth)
                if answer.status_code == 204:
                    return got
                assert answer.status_code == 200, answer.text
                got.append(answer.json()["id"])
            raise AssertionError("unreachable")

        # Two claimers per agent, one starting on each API, all at once.
        results = await asyncio.gather(*(claim_all(n, agent) for agent in agents for n in range(2)))
    return [cid for got in results for cid in got]
