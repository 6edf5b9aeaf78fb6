"""Events for history, and creates for callback, go in batches when several are waiting, and
still land exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import IntakeOutbox
from services.intake.relay import BATCH_ROUTES
from services.intake.settings import IntakeSettings
from shared.contracts import EVENTS_BATCH
from shared.db import asyncpg_dsn
from shared.ids import new_id
from shared.outbox import OutboxRelay, enqueue
from tests.intake.test_generic_webhook import post_call
from tests.intake.test_relay import history_timeline, peers  # noqa: F401  (fixture)
from tests.support.live import LiveServer


@pytest.fixture
async def sent() -> Counter[str]:
    """Requests the relay sent, as `destination METHOD path`."""
    return Counter()


@pytest.fixture
async def relay(
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    internal_key: str,
    sent: Counter[str],
    clean_db: None,
) -> AsyncIterator[OutboxRelay]:
    def counting(name: str) -> Callable[[httpx.Request], Awaitable[None]]:
        async def hook(request: httpx.Request) -> None:
            sent[f"{name} {request.method} {request.url.path}"] += 1

        return hook

    clients = {
        name: httpx.AsyncClient(
            base_url=server.url,
            headers={"authorization": f"Bearer {internal_key}"},
            timeout=5,
            event_hooks={"request": [counting(name)]},
        )
        for name, server in peers.items()
    }
    yield OutboxRelay(
        model=IntakeOutbox,
        session_factory=sessions,
        clients=clients,
        batch_routes=BATCH_ROUTES,
    )
    for client in clients.values():
        await client.aclose()


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[IntakeOutbox]:
    async with sessions() as session:
        return list((await session.scalars(select(IntakeOutbox).order_by(IntakeOutbox.id))).all())


def _event(phone: str, **changes: Any) -> dict[str, Any]:
    event = {
        "id": new_id(),
        "occurred_at": "2026-11-24T12:00:00Z",
        "channel": "phone",
        "direction": "inbound",
        "type": "missed_call",
        "customer": {"phone": phone},
        "summary": "Missed call",
    }
    return {**event, **changes}


async def test_waiting_events_go_to_history_in_one_request_and_each_lands_once(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    phones = [f"+3584055502{i:02d}" for i in range(6)]
    for phone in phones:
        assert (await post_call(intake, webhook_secret, **{"from": phone})).status_code == 202
    for server in peers.values():
        await server.start()

    assert await relay.run_once() == 12

    assert sent == {"history POST /v1/events:batch": 1, "callback POST /v1/callbacks:batch": 1}
    assert all(row.delivered_at is not None and row.attempts == 1 for row in await _rows(sessions))
    key = await make_key("history:read")
    for phone in phones:
        timeline = await history_timeline(peers["history"], key, phone)
        assert [item["type"] for item in timeline] == ["missed_call"]
    assert await _open_callbacks(peers["callback"], await make_key("callbacks:read")) == set(phones)


async def test_a_lone_event_goes_on_its_own(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sent: Counter[str],
) -> None:
    await post_call(intake, webhook_secret, **{"from": "+358405550300"})
    for server in peers.values():
        await server.start()

    assert await relay.run_once() == 2
    assert sent == {"history POST /v1/events": 1, "callback POST /v1/callbacks": 1}


async def test_a_batch_with_a_bad_event_delivers_the_rest_and_parks_only_that_one(
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    good = [_event(f"+3584055504{i:02d}") for i in range(3)]
    bad = _event("+358405550499", type="Not A Type!")
    async with sessions() as session:
        for payload in [good[0], bad, *good[1:]]:
            await enqueue(
                session,
                IntakeOutbox,
                destination="history",
                path="/v1/events",
                payload=payload,
                ordering_key=payload["customer"]["phone"],
            )
        await session.commit()
    await peers["history"].start()

    assert await relay.run_once() == 3

    # History refused the batch as a whole; each row then went on its own.
    assert sent == {"history POST /v1/events:batch": 1, "history POST /v1/events": 4}
    rows = await _rows(sessions)
    refused = [row for row in rows if row.payload["id"] == bad["id"]]
    assert refused[0].dead_at is not None
    assert "422" in (refused[0].last_error or "")
    delivered = [row for row in rows if row.payload["id"] != bad["id"]]
    # The refused batch was not a try of theirs: each was delivered at its first.
    assert all(row.delivered_at is not None and row.attempts == 1 for row in delivered)
    key = await make_key("history:read")
    for event in good:
        timeline = await history_timeline(peers["history"], key, event["customer"]["phone"])
        assert [item["id"] for item in timeline] == [event["id"]]


async def _open_callbacks(callback: LiveServer, key: str) -> set[str]:
    """The numbers callback holds an open callback for."""
    async with httpx.AsyncClient(base_url=callback.url) as client:
        response = await client.get(
            "/v1/callbacks", params={"limit": 100}, headers={"authorization": f"Bearer {key}"}
        )
    assert response.status_code == 200, response.text
    return {item["phone"] for item in response.json()["items"]}


async def test_a_batch_of_creates_with_a_refused_one_delivers_the_rest_and_parks_that_one(
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    phones = ["+358405550801", "not a number", "+358405550802"]
    async with sessions() as session:
        for i, phone in enumerate(phones):
            await enqueue(
                session,
                IntakeOutbox,
                destination="callback",
                path="/v1/callbacks",
                payload={
                    "request_id": f"missed:batch-{i}",
                    "source": "missed_call",
                    "first_contact_at": "2026-11-24T12:00:00Z",
                    "phone": phone,
                },
                ordering_key=f"phone-{i}",
            )
        await session.commit()
    await peers["callback"].start()

    assert await relay.run_once() == 2

    # Callback refused the batch at its second item (the first was made); each row then went
    # on its own: the first replayed, the bad one was refused and parked, the last was made.
    assert sent == {"callback POST /v1/callbacks:batch": 1, "callback POST /v1/callbacks": 3}
    rows = await _rows(sessions)
    assert [(row.delivered_at is not None, row.dead_at is not None) for row in rows] == [
        (True, False),
        (False, True),
        (True, False),
    ]
    assert "422" in (rows[1].last_error or "")
    assert await _open_callbacks(peers["callback"], await make_key("callbacks:read")) == {
        phones[0],
        phones[2],
    }


async def test_a_batch_to_a_peer_that_is_down_waits_and_is_retried_whole(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    for i in range(3):
        await post_call(intake, webhook_secret, **{"from": f"+3584055506{i:02d}"})
    await peers["callback"].start()

    assert await relay.run_once() == 3  # the callbacks; history is down

    history_rows = [row for row in await _rows(sessions) if row.destination == "history"]
    assert sent["history POST /v1/events:batch"] == 1
    assert all(
        row.delivered_at is None and row.attempts == 1 and "ConnectError" in (row.last_error or "")
        for row in history_rows
    )


async def test_calls_arriving_while_a_woken_relay_lingers_reach_history_in_one_request(
    intake: AsyncClient,
    webhook_secret: str,
    intake_settings: IntakeSettings,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    """A relay woken by one commit waits a moment for the next ones, so a busy pipeline sends
    history one request per pass rather than one per call."""
    for server in peers.values():
        await server.start()
    running = OutboxRelay(
        model=IntakeOutbox,
        session_factory=sessions,
        clients=relay.clients,
        listen_dsn=asyncpg_dsn(intake_settings.direct_database_url_for("intake")),
        batch_routes=BATCH_ROUTES,
        # Long enough that the three calls below always fall inside it.
        linger_seconds=3.0,
        poll_seconds=60.0,
    )
    await _three_calls_through(running, sessions, intake, webhook_secret, "+3584055507")

    assert all(row.delivered_at is not None for row in await _rows(sessions))
    assert sent == {"history POST /v1/events:batch": 1, "callback POST /v1/callbacks:batch": 1}


async def _three_calls_through(
    running: OutboxRelay,
    sessions: async_sessionmaker[AsyncSession],
    intake: AsyncClient,
    webhook_secret: str,
    numbers_from: str,
) -> None:
    """Run `running` while three calls come in (from `numbers_from` 00-02), until every row
    is delivered (or half a minute has passed)."""
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        # Its first pass (nothing to send) is over once it waits for a NOTIFY.
        for _ in range(500):
            if await _listening(sessions):
                break
            await asyncio.sleep(0.01)
        for i in range(3):
            caller = {"from": f"{numbers_from}{i:02d}"}
            assert (await post_call(intake, webhook_secret, **caller)).status_code == 202
        for _ in range(1500):
            if all(row.delivered_at is not None for row in await _rows(sessions)):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


async def _listening(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether some connection of this database is listening on intake's outbox channel."""
    async with sessions() as session:
        found = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%ringback_outbox_intake%'"
            )
        )
    return bool(found)


async def _enqueue_events(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    async with sessions() as session:
        for i in range(count):
            event = _event(f"+3584055509{i:02d}")
            await enqueue(
                session,
                IntakeOutbox,
                destination="history",
                path="/v1/events",
                payload=event,
                ordering_key=event["customer"]["phone"],
            )
        await session.commit()


def _gathering(relay: OutboxRelay, seconds: float, **changes: Any) -> OutboxRelay:
    routes = {**BATCH_ROUTES, "history": replace(EVENTS_BATCH, gather_seconds=seconds)}
    return OutboxRelay(
        model=IntakeOutbox,
        session_factory=relay.sessions,
        clients=relay.clients,
        batch_routes=routes,
        **changes,
    )


async def test_events_gather_in_a_running_relay_but_a_single_pass_sends_them(
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    await _enqueue_events(sessions, 2)
    await peers["history"].start()

    gathering = _gathering(relay, 3600)
    assert await gathering.run_once(gather=True) == 0  # the oldest is younger than an hour
    assert sent == {}
    assert await gathering.run_once() == 2  # an operator's pass sends what is there


async def test_a_full_pass_does_not_wait_to_gather(
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    await _enqueue_events(sessions, 3)
    await peers["history"].start()

    # A backlog is a batch already: a pass as full as it may be goes at once.
    assert await _gathering(relay, 3600, batch_size=3).run_once(gather=True) == 3
    assert sent == {"history POST /v1/events:batch": 1}


async def test_a_running_relay_sends_gathered_events_when_due_without_waiting_for_a_poll(
    intake: AsyncClient,
    webhook_secret: str,
    intake_settings: IntakeSettings,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    """Calls' creates go to callback as they come; their events wait for each other and go
    to history in one request once the first is `gather_seconds` old, with no NOTIFY or poll
    to prompt it (the poll is a minute away)."""
    for server in peers.values():
        await server.start()
    running = _gathering(
        relay,
        # Wide enough that the three calls below always fall inside it on a loaded machine.
        4.0,
        listen_dsn=asyncpg_dsn(intake_settings.direct_database_url_for("intake")),
        linger_seconds=0.01,
        poll_seconds=60.0,
    )
    await _three_calls_through(running, sessions, intake, webhook_secret, "+3584055510")

    rows = await _rows(sessions)
    assert all(row.delivered_at is not None for row in rows)
    assert sent["history POST /v1/events:batch"] == 1
    assert sent["history POST /v1/events"] == 0
    events = [row for row in rows if row.destination == "history"]
    creates = [row for row in rows if row.destination == "callback"]
    # Each create reached callback before the events' batch left.
    assert max(row.delivered_at for row in creates if row.delivered_at) < min(
        row.delivered_at for row in events if row.delivered_at
    )


async def test_a_pass_writes_back_delivered_rows_and_only_a_redacted_payload(
    intake: AsyncClient,
    webhook_secret: str,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A pass writes its rows back in one statement (`write_back_statement`): one try,
    delivered, no error, not dead, still due when it was. A relay that redacts delivered
    payloads (history's erasures) writes the new payload too; the others leave it alone."""
    for server in peers.values():
        await server.start()
    redacting = OutboxRelay(
        model=IntakeOutbox,
        session_factory=sessions,
        clients=relay.clients,
        batch_routes=BATCH_ROUTES,
        redact_delivered=lambda payload: {"redacted": sorted(payload)},
    )

    def state(row: IntakeOutbox) -> tuple[Any, ...]:
        return (
            row.attempts,
            row.delivered_at is not None and row.delivered_at >= row.created_at,
            row.last_error,
            row.dead_at,
            row.available_at == row.created_at,
        )

    assert (await post_call(intake, webhook_secret, **{"from": "+358405550301"})).status_code == 202
    assert await redacting.run_once() == 2
    redacted = {row.id: row for row in await _rows(sessions)}
    assert (await post_call(intake, webhook_secret, **{"from": "+358405550302"})).status_code == 202
    assert await relay.run_once() == 2
    kept = {row.id: row for row in await _rows(sessions) if row.id not in redacted}

    assert len(redacted) == len(kept) == 2
    assert {state(row) for row in redacted.values()} == {(1, True, None, None, True)}
    assert {state(row) for row in kept.values()} == {(1, True, None, None, True)}
    assert all(set(row.payload) == {"redacted"} for row in redacted.values())
    assert all(row.payload["redacted"] for row in redacted.values())
    assert not any("redacted" in row.payload for row in kept.values())


async def test_a_relay_gathering_events_is_not_woken_by_more_events_but_is_by_a_call(
    intake: AsyncClient,
    webhook_secret: str,
    intake_settings: IntakeSettings,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
    sent: Counter[str],
) -> None:
    """While every row due is an event waiting to gather, a NOTIFY for more events adds to the
    gathering without a pass of its own; one that names callback (a call's create) is sent at
    once, the events still waiting for their batch."""
    for server in peers.values():
        await server.start()
    claims: list[str] = []

    def count_claims(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement and "intake.outbox" in statement:
            claims.append(statement)

    engine = sessions.kw["bind"].sync_engine
    sa_event.listen(engine, "before_cursor_execute", count_claims)
    running = _gathering(
        relay,
        # Wide enough that everything below happens inside it on a loaded machine.
        6.0,
        listen_dsn=asyncpg_dsn(intake_settings.direct_database_url_for("intake")),
        linger_seconds=0.01,
        poll_seconds=60.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    try:
        for _ in range(500):
            if await _listening(sessions):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the first pass (nothing to send) is over
        before = len(claims)
        for _ in range(3):
            await _enqueue_events(sessions, 1)
            await asyncio.sleep(0.3)
        # The first event's NOTIFY brought one pass, which let it go to gather; the other
        # two brought none.
        assert len(claims) == before + 1
        assert sent == {}

        assert (
            await post_call(intake, webhook_secret, **{"from": "+358405551100"})
        ).status_code == 202
        for _ in range(1500):
            if all(row.delivered_at is not None for row in await _rows(sessions)):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
        sa_event.remove(engine, "before_cursor_execute", count_claims)

    rows = await _rows(sessions)
    assert all(row.delivered_at is not None for row in rows)
    assert sent["history POST /v1/events:batch"] == 1
    create = next(row for row in rows if row.destination == "callback")
    events = [row for row in rows if row.destination == "history"]
    assert len(events) == 4
    assert create.delivered_at is not None
    assert create.delivered_at < min(row.delivered_at for row in events if row.delivered_at)


async def test_a_relay_looks_again_at_once_only_when_a_row_waited_on_one_it_sent(
    intake_settings: IntakeSettings,
    relay: OutboxRelay,
    peers: dict[str, LiveServer],  # noqa: F811
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two events of one customer written together: the second waits on the first and has no
    NOTIFY of its own after it, so the relay looks again as soon as the first is sent (the poll
    is a minute away). A lone event: nothing waited on it, and no pass follows its own."""
    await peers["history"].start()
    claims: list[str] = []

    def count_claims(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement and "intake.outbox" in statement:
            claims.append(statement)

    engine = sessions.kw["bind"].sync_engine
    sa_event.listen(engine, "before_cursor_execute", count_claims)
    running = _gathering(
        relay,
        0.0,
        listen_dsn=asyncpg_dsn(intake_settings.direct_database_url_for("intake")),
        linger_seconds=0.01,
        poll_seconds=60.0,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))

    async def all_delivered() -> list[IntakeOutbox]:
        for _ in range(500):
            rows = await _rows(sessions)
            if rows and all(row.delivered_at is not None for row in rows):
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError("not every row was delivered")

    try:
        for _ in range(500):
            if await _listening(sessions):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the first pass (nothing to send) is over
        async with sessions() as session:
            for summary in ("first", "second"):
                event = _event("+358405551200", summary=summary)
                await enqueue(
                    session,
                    IntakeOutbox,
                    destination="history",
                    path="/v1/events",
                    payload=event,
                    ordering_key="+358405551200",
                )
            await session.commit()
        first, second = await all_delivered()
        assert first.payload["summary"] == "first"
        assert second.payload["summary"] == "second"
        assert first.delivered_at is not None
        assert second.delivered_at is not None
        assert first.delivered_at <= second.delivered_at

        await asyncio.sleep(0.3)  # the look-again after the second has found nothing
        before = len(claims)
        await _enqueue_events(sessions, 1)
        await all_delivered()
        await asyncio.sleep(0.3)
        assert len(claims) == before + 1, "a pass after the lone event's own"
    finally:
        stop.set()
        await task
        sa_event.remove(engine, "before_cursor_execute", count_claims)
