"""The generic webhook's `callback_requested` (§11): the caller asked for a callback while
waiting in the PBX's queue. It keeps their place like Twilio's "press 1", is deduplicated on
(call id, status), and a request merged into an open callback brings its earlier place and
its promise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.history.app import create_app as create_history
from services.history.settings import HistorySettings
from services.intake.models import IntakeOutbox
from shared.outbox import OutboxRelay
from tests.intake.test_generic_webhook import post_call
from tests.intake.test_relay import history_timeline
from tests.support.infra import free_port
from tests.support.live import LiveServer

MAIJA = "+358401234567"
MakeKey = Callable[..., Awaitable[str]]
Rows = Callable[[], Awaitable[list[Any]]]


def ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


@pytest.fixture
async def peers(settings_kwargs: dict[str, Any]) -> AsyncIterator[dict[str, LiveServer]]:
    servers = {
        "callback": LiveServer(create_callback(CallbackSettings(**settings_kwargs)), free_port()),
        "history": LiveServer(create_history(HistorySettings(**settings_kwargs)), free_port()),
    }
    for server in servers.values():
        await server.start()
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
async def deliver(
    peers: dict[str, LiveServer], sessions: async_sessionmaker[AsyncSession], internal_key: str
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The outbox relay, run until intake's forwards have all arrived."""
    clients = {
        name: httpx.AsyncClient(
            base_url=server.url, headers={"authorization": f"Bearer {internal_key}"}, timeout=10
        )
        for name, server in peers.items()
    }
    relay = OutboxRelay(model=IntakeOutbox, session_factory=sessions, clients=clients)

    async def run() -> None:
        while await relay.run_once():
            pass

    yield run
    for client in clients.values():
        await client.aclose()


async def callbacks_of(callback: LiveServer, key: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=callback.url) as client:
        answer = await client.get(
            "/v1/callbacks", params={"phone": MAIJA}, headers={"authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_a_request_keeps_the_callers_place_and_is_on_the_timeline(
    intake: AsyncClient,
    webhook_secret: str,
    deliver: Callable[[], Awaitable[None]],
    peers: dict[str, LiveServer],
    make_key: MakeKey,
    outbox_rows: Rows,
) -> None:
    queued_at = ago(7)
    answer = await post_call(
        intake,
        webhook_secret,
        call_id="pbx-1",
        status="callback_requested",
        queued_at=queued_at,
        occurred_at=ago(1),
        queue="billing",
    )

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [(row.destination, row.path) for row in rows] == [
        ("history", "/v1/events"),
        ("callback", "/v1/callbacks"),
    ]
    event, create = (row.payload for row in rows)
    assert event["type"] == "callback_requested"
    assert datetime.fromisoformat(create["queued_at"]) == datetime.fromisoformat(queued_at)
    await deliver()

    key = await make_key("callbacks:read", "history:read")
    [callback] = await callbacks_of(peers["callback"], key)
    assert callback["requested_in_queue"] is True
    assert datetime.fromisoformat(callback["rank_at"]) == datetime.fromisoformat(queued_at)
    assert callback["first_contact_at"] == callback["rank_at"]
    assert datetime.fromisoformat(callback["due_at"]) <= datetime.now(UTC)
    types = [e["type"] for e in await history_timeline(peers["history"], key, MAIJA)]
    assert "callback_requested" in types
    assert "missed_call" not in types


async def test_the_request_and_a_later_abandoned_of_the_same_call_are_two_records(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Rows
) -> None:
    requested = await post_call(
        intake, webhook_secret, call_id="pbx-2", status="callback_requested", queued_at=ago(3)
    )
    repeated = await post_call(
        intake, webhook_secret, call_id="pbx-2", status="callback_requested", queued_at=ago(3)
    )
    abandoned = await post_call(intake, webhook_secret, call_id="pbx-2", status="abandoned")

    assert repeated.json() == {"id": requested.json()["id"], "status": "duplicate"}
    assert abandoned.json()["status"] == "accepted"
    assert abandoned.json()["id"] != requested.json()["id"]
    types = [row.payload.get("type") for row in await outbox_rows() if row.path == "/v1/events"]
    assert types == ["callback_requested", "missed_call"]


async def test_a_request_from_a_withheld_number_is_only_recorded(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Rows
) -> None:
    answer = await post_call(
        intake, webhook_secret, status="callback_requested", **{"from": "anonymous"}
    )
    assert answer.json()["status"] == "recorded"
    rows: list[IntakeOutbox] = await outbox_rows()
    assert [row.path for row in rows] == ["/v1/events"]
    assert rows[0].payload["data"]["caller_withheld"] is True


async def test_a_request_merged_into_an_open_callback_brings_its_earlier_place(
    intake: AsyncClient,
    webhook_secret: str,
    deliver: Callable[[], Awaitable[None]],
    peers: dict[str, LiveServer],
    make_key: MakeKey,
) -> None:
    # A missed call a minute ago made a callback ranked by its due time; then the same
    # caller, who had been waiting in the queue for ten minutes, asks for a callback.
    await post_call(intake, webhook_secret, call_id="pbx-3", occurred_at=ago(1), queue=None)
    await deliver()
    key = await make_key("callbacks:read")
    [before] = await callbacks_of(peers["callback"], key)
    queued_at = ago(10)

    await post_call(
        intake,
        webhook_secret,
        call_id="pbx-4",
        status="callback_requested",
        queued_at=queued_at,
        queue=None,
    )
    await deliver()

    [after] = await callbacks_of(peers["callback"], key)
    assert after["id"] == before["id"]
    assert after["contact_count"] == 2
    assert after["requested_in_queue"] is True
    assert datetime.fromisoformat(after["rank_at"]) == datetime.fromisoformat(queued_at)
    assert datetime.fromisoformat(after["rank_at"]) < datetime.fromisoformat(before["rank_at"])


async def test_a_merged_request_keeps_the_earlier_place_and_the_spoken_promise(
    peers: dict[str, LiveServer], internal_key: str, make_key: MakeKey, clean_db: None
) -> None:
    auth = {"authorization": f"Bearer {internal_key}"}
    now = datetime.now(UTC)
    early, late = now - timedelta(minutes=20), now - timedelta(minutes=5)
    told = now + timedelta(minutes=12)

    def request(request_id: str, queued_at: datetime, **extra: Any) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "source": "missed_call",
            "first_contact_at": queued_at.isoformat(),
            "phone": MAIJA,
            "queued_at": queued_at.isoformat(),
            **extra,
        }

    async with httpx.AsyncClient(base_url=peers["callback"].url, headers=auth) as client:
        first = await client.post("/v1/callbacks", json=request("r-1", early))
        # A later press-1 of the same caller: merged; its place is later, so the first stands,
        # and what they were told now joins the promise.
        second = await client.post(
            "/v1/callbacks", json=request("r-2", late, estimated_callback_at=told.isoformat())
        )
    assert (first.status_code, second.status_code) == (201, 200)
    [callback] = await callbacks_of(peers["callback"], await make_key("callbacks:read"))
    assert datetime.fromisoformat(callback["rank_at"]) == early
    assert datetime.fromisoformat(callback["promised_by"]) == told
