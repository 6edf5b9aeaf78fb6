"""The live stream: SSE over real HTTP, resuming, several instances, merges, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from services.history.app import create_app
from services.history.stream import Broadcaster
from tests.history.conftest import history_settings, make_event
from tests.support.live import LiveServer, live

pytestmark = pytest.mark.usefixtures("clean_db")


@dataclass
class Sse:
    id: str | None
    event: str | None
    data: Any


class SseReader:
    """Reads a text/event-stream response: events, and the comments between them."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, seconds: float = 10.0) -> Sse:
        """The next event (comments on the way are kept in `comments`)."""
        async with asyncio.timeout(seconds):
            while True:
                item = await self._item()
                if isinstance(item, Sse):
                    return item

    async def comment(self, seconds: float = 10.0) -> str:
        """The next comment line; an event before it is a failure."""
        item = await asyncio.wait_for(self._item(), seconds)
        assert isinstance(item, str), item
        return item

    async def _item(self) -> Sse | str:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if "data" in fields:
                    return Sse(fields.get("id"), fields.get("event"), json.loads(fields["data"]))
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line)
                return line
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise EOFError("stream ended")

    async def events(self, count: int, seconds: float = 10.0) -> list[Sse]:
        return [await self.next(seconds) for _ in range(count)]


@contextlib.asynccontextmanager
async def sse(
    server: LiveServer, headers: dict[str, str], **params: Any
) -> AsyncIterator[SseReader]:
    extra = {k: v for k, v in params.items() if k == "Last-Event-ID"}
    query = {k: v for k, v in params.items() if k != "Last-Event-ID"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", "/v1/stream", params=query, headers={**headers, **extra}) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        yield SseReader(response)


async def post(server: LiveServer, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/v1/events", json=make_event(**fields), headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def server(settings_kwargs: dict[str, Any]) -> AsyncIterator[LiveServer]:
    app = create_app(history_settings(settings_kwargs, history_stream_heartbeat_seconds=0.3))
    async with live(app) as running:
        yield running


async def _wait_subscribed(server: LiveServer, count: int = 1) -> None:
    broadcaster: Broadcaster = server.app.state.broadcaster
    for _ in range(500):
        if broadcaster.subscriptions >= count and broadcaster.listening:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream did not subscribe")


async def test_stream_delivers_new_events_live_with_heartbeats(
    server: LiveServer, writer: dict[str, str], reader: dict[str, str]
) -> None:
    first = await post(server, writer, summary="before the stream")
    customer_id = first["customer_id"]
    async with sse(server, reader, customer_id=customer_id) as stream:
        await _wait_subscribed(server)
        sent = [
            await post(server, writer, summary=f"live {i}", type="call_answered") for i in range(3)
        ]
        # Someone else's event does not appear on this customer's stream.
        await post(server, writer, customer={"phone": "0409999999"})
        got = await stream.events(3)
        assert [e.data["id"] for e in got] == [s["id"] for s in sent]
        assert [e.event for e in got] == ["call_answered"] * 3
        assert all(e.data["customer_id"] == customer_id for e in got)
        assert got[0].data == {**sent[0]}
        ids = [int(e.id or 0) for e in got]
        assert ids == sorted(ids)
        # Idle: keep-alive comments flow (every 0.3 s here), and only them.
        assert [await stream.comment(2) for _ in range(2)] == [": keep-alive"] * 2
    # The client went away: its subscription is gone.
    broadcaster: Broadcaster = server.app.state.broadcaster
    for _ in range(200):
        if broadcaster.subscriptions == 0:
            break
        await asyncio.sleep(0.01)
    assert broadcaster.subscriptions == 0


async def test_resume_with_last_event_id_gets_exactly_the_missed_events(
    server: LiveServer, writer: dict[str, str], reader: dict[str, str]
) -> None:
    first = await post(server, writer)
    customer_id = first["customer_id"]
    async with sse(server, reader, customer_id=customer_id) as stream:
        await _wait_subscribed(server)
        seen = await post(server, writer, summary="seen")
        (event,) = await stream.events(1)
        assert event.data["id"] == seen["id"]
        last_id = event.id
    assert last_id is not None

    # Disconnected: three events happen (and one for somebody else).
    missed = [await post(server, writer, summary=f"missed {i}") for i in range(3)]
    await post(server, writer, customer={"phone": "0409999999"})

    async with sse(server, reader, customer_id=customer_id, **{"Last-Event-ID": last_id}) as again:
        replayed = await again.events(3)
        assert [e.data["id"] for e in replayed] == [m["id"] for m in missed]
        # ...then it is live, with nothing else in between.
        await _wait_subscribed(server)
        after = await post(server, writer, summary="after")
        (live_event,) = await again.events(1)
        assert live_event.data["id"] == after["id"]


async def test_resume_by_header_or_query_replays_from_the_database(
    server: LiveServer, writer: dict[str, str], reader: dict[str, str]
) -> None:
    first = await post(server, writer)
    customer_id = first["customer_id"]
    async with sse(server, reader, customer_id=customer_id, last_event_id=0) as stream:
        (replayed,) = await stream.events(1)
        assert replayed.data["id"] == first["id"]
        start = replayed.id
    later = [await post(server, writer, summary=f"later {i}") for i in range(2)]
    async with sse(server, reader, customer_id=customer_id, last_event_id=start) as by_query:
        assert [e.data["id"] for e in await by_query.events(2)] == [e["id"] for e in later]
    # The header wins over the query (the browser's own resume point).
    async with sse(
        server, reader, customer_id=customer_id, last_event_id=0, **{"Last-Event-ID": start}
    ) as both:
        assert [e.data["id"] for e in await both.events(2)] == [e["id"] for e in later]


async def test_event_stored_by_one_instance_reaches_a_stream_on_another(
    settings_kwargs: dict[str, Any], writer: dict[str, str], reader: dict[str, str]
) -> None:
    one = create_app(history_settings(settings_kwargs))
    two = create_app(history_settings(settings_kwargs))
    async with live(one) as first, live(two) as second:
        customer_id = (await post(first, writer))["customer_id"]
        async with sse(second, reader, customer_id=customer_id) as stream:
            await _wait_subscribed(second)
            stored = await post(first, writer, summary="via the other instance")
            (event,) = await stream.events(1)
            assert event.data["id"] == stored["id"]
            batch = [make_event(summary=f"batch {i}") for i in range(3)]
            async with httpx.AsyncClient(base_url=first.url) as http:
                response = await http.post(
                    "/v1/events:batch", json={"events": batch}, headers=writer
                )
            assert response.status_code == 200
            assert [e.data["id"] for e in await stream.events(3)] == [b["id"] for b in batch]


async def test_stream_of_a_merged_customer_follows_the_survivor(
    server: LiveServer, writer: dict[str, str], reader: dict[str, str]
) -> None:
    older = (await post(server, writer, customer={"phone": "0401111111"}))["customer_id"]
    newer = (await post(server, writer, customer={"email": "m@example.fi"}))["customer_id"]
    async with sse(server, reader, customer_id=newer) as stream:
        await _wait_subscribed(server)
        bridge = await post(
            server, writer, customer={"phone": "0401111111", "email": "m@example.fi"}
        )
        assert bridge["customer_id"] == older
        # The merge itself, then the bridging event, both now on the survivor's timeline.
        got = await stream.events(2)
        assert {e.event for e in got} == {"customer_merged", "missed_call"}
        assert all(e.data["customer_id"] == older for e in got)
        # Later events of the survivor keep coming to the stream opened with the old id.
        later = await post(server, writer, customer={"phone": "0401111111"})
        (event,) = await stream.events(1)
        assert event.data["id"] == later["id"]


async def test_stream_refuses_bad_requests(
    server: LiveServer, writer: dict[str, str], reader: dict[str, str]
) -> None:
    customer_id = (await post(server, writer))["customer_id"]
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (
            await http.get("/v1/stream", params={"customer_id": customer_id})
        ).status_code == 401
        response = await http.get("/v1/stream", params={"customer_id": customer_id}, headers=writer)
        assert response.status_code == 403
        response = await http.get(
            "/v1/stream",
            params={"customer_id": "0190b7a0-0000-7000-8000-000000000000"},
            headers=reader,
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert (await http.get("/v1/stream", headers=reader)).status_code == 422
        for bad in ("soon", "-1", str(2**63)):
            response = await http.get(
                "/v1/stream",
                params={"customer_id": customer_id},
                headers={**reader, "Last-Event-ID": bad},
            )
            assert response.status_code == 422, bad


async def test_slow_subscriber_holds_a_bounded_queue_and_loses_nothing() -> None:
    broadcaster = Broadcaster(queue_size=4)
    sub = broadcaster.subscribe("c-1")
    other = broadcaster.subscribe("c-2")
    for seq in range(1, 1001):
        broadcaster.dispatch(f"{seq}:c-1")
    broadcaster.dispatch("not a notice")
    assert sub.queue.qsize() == 4
    assert sub.overflowed  # the stream catches up from the database, seq > last sent
    assert other.queue.empty()
    broadcaster.follow(other, "c-1")
    broadcaster.dispatch("1001:c-1")
    assert other.queue.get_nowait() == 1001
    broadcaster.unsubscribe(sub)
    broadcaster.unsubscribe(other)
    assert broadcaster.subscriptions == 0
