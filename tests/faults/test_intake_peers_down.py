"""Callback and history down while 1,000 missed calls come in: all arrive, once, when they return.

Every process is real: intake and the relay run first with their peers stopped; the relay is
killed and restarted mid-way (it must resume from PostgreSQL alone); then callback and history
start, and their own APIs must show every call exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.infra import free_port
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, running_stack

# Reading back 2,000 records through the APIs comes on top of the time the delivery may take.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SECRET = new_secret()
CALLS = 1000
# From the first webhook sent to the last row delivered: a bound for a small, busy machine
# (about 60 s on a quiet 2-core one), not a performance figure; the benchmarks measure speed.
DEADLINE_SECONDS = 150.0


def phone(i: int) -> str:
    return f"040 1{i:06d}"


def e164(i: int) -> str:
    return f"+35840{1_000_000 + i}"


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        "RINGBACK_RELAY_METRICS_PORT": str(free_port()),
        "RINGBACK_RELAY_POLL_SECONDS": "0.5",
        # Four processes share PostgreSQL with other test runs: stay far below max_connections
        # (a refused connection is a 500 and a retry with backoff, which only slows the drain).
        "RINGBACK_DB_POOL_SIZE": "4",
        "RINGBACK_DB_MAX_OVERFLOW": "4",
        "RINGBACK_RELAY_BATCH_SIZE": "50",
        "RINGBACK_SINK_DIR": str(tmp_path / "sink"),
    }
    with running_stack(base_env, tmp_path / "logs", extra, ("intake", "relay")) as running:
        yield running


async def send_all(url: str) -> list[httpx.Response]:
    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(i: int) -> httpx.Response:
            body = body_of(call_event(call_id=f"fault-{i}", **{"from": phone(i)}))
            async with limit:
                return await client.post(
                    "/v1/webhooks/generic", content=body, headers=signed_headers(SECRET, body)
                )

        return await asyncio.gather(*(one(i) for i in range(CALLS)))


async def relay_metric(stack: Stack, name: str) -> float | None:
    port = stack.env["RINGBACK_RELAY_METRICS_PORT"]
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(f'{name}{{source="intake"}}'):
            return float(line.rsplit(" ", 1)[1])
    return None


async def eventually(check: Callable[[], Awaitable[Any]], deadline: float) -> Any:
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError("not in time")


async def test_a_thousand_missed_calls_survive_peers_down_and_a_relay_restart(
    stack: Stack, make_key: Callable[..., Awaitable[str]]
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    answers = await send_all(stack.url("intake"))
    assert [a.status_code for a in answers] == [202] * CALLS
    assert {a.json()["status"] for a in answers} == {"accepted"}

    # The relay sees the backlog it cannot deliver, and says so on its metrics.
    async def backlog_seen() -> bool:
        return (await relay_metric(stack, "ringback_outbox_backlog")) == 2 * CALLS

    await eventually(backlog_seen, deadline)
    # Killed without a chance to clean up, then started again: it resumes from the database.
    stack.stop("relay", sig=signal.SIGKILL)
    stack.start("relay")
    stack.start("history")
    stack.start("callback")

    async def drained() -> bool:
        return (await relay_metric(stack, "ringback_outbox_backlog")) == 0

    await eventually(drained, deadline)

    key = await make_key("history:read", "callbacks:read")
    auth = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.url("callback"), headers=auth) as callback:
        phones: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
            page = (await callback.get("/v1/callbacks", params=params)).json()
            phones += [item["phone"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert sorted(phones) == sorted(e164(i) for i in range(CALLS)), "one callback per call"

    limit = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=stack.url("history"), headers=auth) as history:

        async def missed_calls(i: int) -> int:
            async with limit:
                found = (await history.get("/v1/customers", params={"phone": e164(i)})).json()
                [customer] = found["items"]
                timeline = await history.get(f"/v1/customers/{customer['id']}/timeline")
                return [e["type"] for e in timeline.json()["items"]].count("missed_call")

        counts = await asyncio.gather(*(missed_calls(i) for i in range(CALLS)))
    assert counts == [1] * CALLS, "each call is on its customer's timeline exactly once"
