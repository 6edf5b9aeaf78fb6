"""Every process through a real PgBouncer in transaction pooling (RINGBACK_DB_POOLER)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from shared.db import create_engine
from shared.settings import CommonSettings
from tests.e2e.test_missed_call import SECRET
from tests.e2e.test_missed_call import (
    test_a_missed_call_reaches_the_customer_and_the_timeline as missed_call_flow,
)
from tests.support import infra
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.pgbouncer import PgBouncer, pgbouncer
from tests.support.signing import body_of, call_event, signed_headers
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def bouncer(database: infra.TestDatabase, tmp_path: Path) -> Iterator[PgBouncer]:
    # Two server connections for every client: a transaction lands on whichever is free.
    with pgbouncer(database.url, tmp_path / "pgbouncer.log", pool_size=2) as running:
        yield running


async def test_a_statement_runs_again_on_another_server_connection(bouncer: PgBouncer) -> None:
    # With asyncpg's and SQLAlchemy's statement caches (no pooler set), the second run of a
    # statement on client connection `a` reuses the statement prepared on the server connection
    # `b` now holds, and PgBouncer gives `a` the other one: "prepared statement ... does not
    # exist".
    settings = CommonSettings(database_url=bouncer.url, db_pooler="pgbouncer")
    engine = create_engine(settings, application_name="ringback.tests", service=None)
    statement = text("SELECT count(*) FROM pg_class WHERE relname LIKE :name")
    try:
        async with engine.connect() as a, engine.connect() as b:
            first = await a.scalar(statement, {"name": "pg_%"})
            await a.commit()
            # `b` now holds the server connection `a` used, inside its transaction.
            await b.scalar(text("SELECT pg_backend_pid()"))
            again = await a.scalar(statement, {"name": "pg_%"})
            await a.commit()
            await b.commit()
    finally:
        await engine.dispose()
    assert again == first


async def test_autocommitted_statements_and_transactions_share_two_server_connections(
    bouncer: PgBouncer,
) -> None:
    # An autocommitted statement is prepared, then run: with named statements, PgBouncer may
    # put the two on different server connections while transactions keep the other busy.
    settings = CommonSettings(database_url=bouncer.url, db_pooler="pgbouncer")
    engine = create_engine(settings, application_name="ringback.tests", service=None)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    failures: list[str] = []

    async def client(n: int) -> None:
        for i in range(25):
            try:
                if n % 2:
                    async with autocommit.connect() as conn:
                        got = await conn.scalar(text("SELECT 1 + CAST(:i AS int)"), {"i": i})
                else:
                    async with engine.begin() as conn:
                        await conn.execute(text("SELECT pg_sleep(0.001)"))
                        got = await conn.scalar(text("SELECT 1 + CAST(:i AS int)"), {"i": i})
                assert got == i + 1
            except Exception as exc:
                failures.append(str(exc).splitlines()[0])

    try:
        await asyncio.gather(*(client(n) for n in range(8)))
    finally:
        await engine.dispose()
    assert failures == []


@pytest.fixture
def stack(
    base_env: dict[str, str],
    database: infra.TestDatabase,
    bouncer: PgBouncer,
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_DATABASE_URL": bouncer.url,
        "RINGBACK_DATABASE_DIRECT_URL": database.url,
        "RINGBACK_DB_POOLER": "pgbouncer",
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        # A live stream not woken by NOTIFY reads again only after these: longer than the
        # test waits for an event.
        "RINGBACK_HISTORY_STREAM_HEARTBEAT_SECONDS": "120",
        "RINGBACK_API_KEY_CACHE_SECONDS": "120",
        **delivering_to(gateway, inbox, tmp_path / "sink"),
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def test_the_missed_call_flow_runs_through_pgbouncer(
    stack: Stack,
    bouncer: PgBouncer,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    await missed_call_flow(stack, gateway, inbox, make_key)
    # Every service logged in through PgBouncer: the flow above ran on its pooled connections.
    assert "login attempt" in bouncer.log.read_text(errors="replace")
    for name in ("intake", "callback", "history", "worker", "relay"):
        assert "prepared statement" not in stack.tail(name, 400), stack.tail(name)


async def test_the_live_stream_listens_past_pgbouncer(
    stack: Stack, make_key: Callable[..., Awaitable[str]]
) -> None:
    # LISTEN through PgBouncer in transaction mode hears nothing (the server connection it
    # ran on goes back to the pool); history listens on the direct connection instead.
    first = call_event(call_id="pgb-call-1", **{"from": "040 765 0001"})
    await _missed_call(stack, first)
    key = await make_key("history:read")
    async with httpx.AsyncClient(
        base_url=stack.url("history"),
        headers={"authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(10, read=60),
    ) as history:
        customer = await _customer(history, "0407650001")
        async with _events(history, customer) as (received, arrived):
            await _missed_call(stack, call_event(call_id="pgb-call-2", **{"from": "040 765 0001"}))
            async with asyncio.timeout(20):
                while not any(e["type"] == "missed_call" for e in received):
                    arrived.clear()
                    await arrived.wait()


async def _missed_call(stack: Stack, event: dict[str, object]) -> None:
    body = body_of(event)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(SECRET, body),
        )
    assert answer.status_code == 202, answer.text


async def _customer(history: httpx.AsyncClient, phone: str) -> str:
    async with asyncio.timeout(30):
        while True:
            found = await history.get("/v1/customers", params={"phone": phone})
            if found.status_code == 200 and found.json()["items"]:
                return str(found.json()["items"][0]["id"])
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _events(
    history: httpx.AsyncClient, customer: str
) -> AsyncIterator[tuple[list[dict[str, object]], asyncio.Event]]:
    """The events a live stream of `customer` sends as they come, and an event set on each."""
    received: list[dict[str, object]] = []
    opened, arrived = asyncio.Event(), asyncio.Event()

    async def read() -> None:
        async with history.stream("GET", "/v1/stream", params={"customer_id": customer}) as r:
            assert r.status_code == 200
            opened.set()
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line.removeprefix("data:")))
                    arrived.set()

    task = asyncio.create_task(read())
    try:
        async with asyncio.timeout(10):
            await opened.wait()
        yield received, arrived
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
