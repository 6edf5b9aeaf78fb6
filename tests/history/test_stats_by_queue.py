"""Statistics per queue and per agent (DESIGN §9), against a dataset counted by hand below.

Events go in through history's own API as callback and intake send them. A real HTTP server
on loopback stands in for callback's `GET /v1/queues/{key}`, which tells a queue's zone.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from alembic import command
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.migrate import alembic_config, upgrade
from services.history.app import create_app
from services.history.queues import QueueZones
from shared.apikeys import create_key
from shared.db import create_engine, create_session_factory
from shared.ids import new_id
from shared.settings import CommonSettings
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.support import infra

SITE_ZONE = "Europe/Helsinki"  # UTC+2 in November
STOCKHOLM = "Europe/Stockholm"  # UTC+1 in November


@dataclass
class StandInCallback:
    """Callback's queue look-up on loopback: the queues it knows, and what it was asked."""

    url: str = ""
    # Per queue key, the zone fields of its answer.
    queues: dict[str, dict[str, str | None]] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    # Answer 500 to everything (callback failing).
    failing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def stand_in_callback(queues: dict[str, dict[str, str | None]]) -> Iterator[StandInCallback]:
    server_state = StandInCallback(queues=queues)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with server_state.lock:
                server_state.paths.append(self.path)
                server_state.authorizations.append(self.headers.get("authorization", ""))
            key = self.path.removeprefix("/v1/queues/")
            body: dict[str, Any]
            if server_state.failing:
                status, body = 500, {"title": "Internal Server Error", "status": 500}
            elif self.path.startswith("/v1/queues/") and key in server_state.queues:
                status = 200
                body = {"key": key, "name": key.title(), **server_state.queues[key]}
            else:
                status, body = 404, {"title": "Not Found", "status": 404}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def callback_peer() -> Iterator[StandInCallback]:
    queues: dict[str, dict[str, str | None]] = {
        "billing": {"timezone": STOCKHOLM},
        # No zone of its own: the site's.
        "support": {"timezone": None},
        # Callback's answer also names the zone in force.
        "sales": {"timezone": None, "effective_timezone": "Europe/Tallinn"},
    }
    with stand_in_callback(queues) as peer:
        yield peer


@pytest.fixture
async def internal(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('internal')}"}


async def _history(
    settings_kwargs: dict[str, Any], callback_url: str
) -> AsyncIterator[AsyncClient]:
    app = create_app(history_settings(settings_kwargs, callback_url=callback_url))
    async for http in serve_asgi(app):
        yield http


@pytest.fixture
async def client(
    clean_db: None, settings_kwargs: dict[str, Any], callback_peer: StandInCallback
) -> AsyncIterator[AsyncClient]:
    """History, with callback answering its queue look-ups."""
    async for http in _history(settings_kwargs, callback_peer.url):
        yield http


@pytest.fixture
async def callback_down(
    clean_db: None, settings_kwargs: dict[str, Any]
) -> AsyncIterator[AsyncClient]:
    """History, with nothing listening where callback should be."""
    async for http in _history(settings_kwargs, f"http://127.0.0.1:{infra.free_port()}"):
        yield http


def missed(at: str, who: str, **data: Any) -> dict[str, Any]:
    """A missed call as intake sends it; `data.queue` is whatever the phone system named."""
    return make_event(
        occurred_at=at,
        type="missed_call",
        customer={"phone": who},
        subject={"kind": "inbound", "id": new_id()},
        actor={"kind": "customer"},
        data={"provider": "generic", "status": "missed", **data},
    )


def lifecycle(
    type_: str, cb: str, at: str, who: str, *, agent: str | None = None, **state: Any
) -> dict[str, Any]:
    """A callback lifecycle event as callback sends it: `data` is the `CallbackState`."""
    return make_event(
        occurred_at=at,
        direction="internal",
        type=type_,
        customer={"phone": who},
        subject={"kind": "callback", "id": cb},
        actor={"kind": "agent", "id": agent} if agent else {"kind": "system"},
        data={"status": type_.removeprefix("callback_"), **state},
    )


# Monday 16 and Tuesday 17 November 2026. Hand counts in the tests below.
DATASET = [
    # Missed calls: intake passes on the queue the phone system named, key or not.
    missed("2026-11-16T08:00:00Z", "0401000001", queue="billing"),
    missed("2026-11-16T09:00:00Z", "0401000002", queue="Support Line"),  # free text: no queue
    # 23.30 Monday in Stockholm, 00.30 Tuesday in Helsinki.
    missed("2026-11-16T22:30:00Z", "0401000003", queue="billing"),
    missed("2026-11-17T07:00:00Z", "0401000004"),  # no queue named
    # b1 (billing): anna claims and reaches the customer in 30 min, within the SLA, the agent
    # they last spoke with. Callback clears `agent_id` once the callback leaves her hands.
    lifecycle(
        "callback_created",
        "b1",
        "2026-11-16T08:00:30Z",
        "0401000001",
        queue="billing",
        first_contact_at="2026-11-16T08:00:00+00:00",
        sla_deadline="2026-11-16T10:00:00+00:00",
    ),
    lifecycle(
        "callback_claimed",
        "b1",
        "2026-11-16T08:20:00Z",
        "0401000001",
        agent="anna",
        queue="billing",
        agent_id="anna",
        status="in_progress",
    ),
    lifecycle(
        "callback_completed",
        "b1",
        "2026-11-16T08:30:00Z",
        "0401000001",
        agent="anna",
        queue="billing",
        agent_id=None,
        outcome="reached",
        same_agent=True,
        first_contact_at="2026-11-16T08:00:00+00:00",
        sla_deadline="2026-11-16T10:00:00+00:00",
    ),
    # b2 (billing, created 23.31 Monday in Stockholm): bob reaches them in 3 h, past the SLA.
    lifecycle(
        "callback_created",
        "b2",
        "2026-11-16T22:31:00Z",
        "0401000003",
        queue="billing",
        first_contact_at="2026-11-16T22:30:00+00:00",
        sla_deadline="2026-11-17T00:30:00+00:00",
    ),
    lifecycle(
        "callback_completed",
        "b2",
        "2026-11-17T01:30:00Z",
        "0401000003",
        agent="bob",
        queue="billing",
        outcome="reached",
        same_agent=False,
        sla_deadline="2026-11-17T00:30:00+00:00",
    ),
    # s1 (support): bob reaches them in 40 min, within the SLA, the same agent as before.
    lifecycle(
        "callback_created",
        "s1",
        "2026-11-16T09:00:30Z",
        "0401000002",
        queue="support",
        first_contact_at="2026-11-16T09:00:00+00:00",
        sla_deadline="2026-11-16T11:00:00+00:00",
    ),
    lifecycle(
        "callback_completed",
        "s1",
        "2026-11-16T09:40:00Z",
        "0401000002",
        agent="bob",
        queue="support",
        outcome="reached",
        same_agent=True,
    ),
    # s2 (support): anna's tries run out; closed, not reached.
    lifecycle(
        "callback_created",
        "s2",
        "2026-11-17T07:00:30Z",
        "0401000004",
        queue="support",
        sla_deadline="2026-11-17T09:00:00+00:00",
    ),
    lifecycle(
        "callback_failed",
        "s2",
        "2026-11-17T12:00:00Z",
        "0401000004",
        agent="anna",
        queue="support",
        outcome="attempts_exhausted",
        sla_deadline="2026-11-17T09:00:00+00:00",
    ),
    # s3 (support): nobody got to it; expired by the system.
    lifecycle(
        "callback_created",
        "s3",
        "2026-11-17T08:00:00Z",
        "0401000005",
        queue="support",
        sla_deadline="2026-11-17T10:00:00+00:00",
    ),
    lifecycle(
        "callback_expired",
        "s3",
        "2026-11-17T10:00:01Z",
        "0401000005",
        queue="support",
        sla_deadline="2026-11-17T10:00:00+00:00",
    ),
    # d1: sent by a callback from before queues (no `queue`, no `same_agent`): `default`.
    lifecycle(
        "callback_created",
        "d1",
        "2026-11-16T10:00:00Z",
        "0401000006",
        first_contact_at="2026-11-16T10:00:00+00:00",
        sla_deadline="2026-11-16T12:00:00+00:00",
    ),
    lifecycle(
        "callback_completed",
        "d1",
        "2026-11-16T11:00:00Z",
        "0401000006",
        agent="anna",
        outcome="reached",
    ),
]

# Monday and Tuesday in Helsinki, wide enough for every event above.
WHOLE = {"from": "2026-11-16T00:00:00+02:00", "to": "2026-11-18T00:00:00+02:00"}


@pytest.fixture
async def seeded(client: AsyncClient, internal: dict[str, str]) -> AsyncClient:
    response = await client.post("/v1/events:batch", json={"events": DATASET}, headers=internal)
    assert response.status_code == 200, response.text
    return client


async def _stats(client: AsyncClient, headers: dict[str, str], **params: str) -> Any:
    response = await client.get("/v1/stats", params={**WHOLE, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _figures(body: dict[str, Any]) -> dict[str, Any]:
    """What the hand counts below check: counts, time to reach, SLA, same-agent reaches."""
    keys = ("contacts", "missed_calls", "callbacks", "time_to_reach", "sla", "same_agent_reaches")
    return {key: body[key] for key in keys}


NOTHING = {
    "contacts": {},
    "missed_calls": 0,
    "callbacks": {"created": 0, "completed": 0, "failed": 0, "expired": 0},
    "time_to_reach": {"count": 0, "median_seconds": None, "p90_seconds": None},
    "sla": {"closed": 0, "reached_within": 0, "share": None},
    "same_agent_reaches": 0,
}


async def test_all_queues_and_agents_together(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader)
    assert (body["queue"], body["agent_id"], body["timezone"]) == (None, None, SITE_ZONE)
    # Reached: b1 1800, s1 2400, d1 3600, b2 10800 s. Median (2400 + 3600) / 2; p90 at rank
    # 2.7: 3600 + 0.7 * 7200. Closed with a deadline: all six; within it: b1, s1, d1.
    assert _figures(body) == {
        "contacts": {"phone": 4},
        "missed_calls": 4,
        "callbacks": {"created": 6, "completed": 4, "failed": 1, "expired": 1},
        "time_to_reach": {"count": 4, "median_seconds": 3000.0, "p90_seconds": 8640.0},
        "sla": {"closed": 6, "reached_within": 3, "share": 0.5},
        "same_agent_reaches": 2,
    }


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (
            "billing",
            {
                # m1 and m3 named the queue; m2's free text and m4 name none.
                "contacts": {"phone": 2},
                "missed_calls": 2,
                "callbacks": {"created": 2, "completed": 2, "failed": 0, "expired": 0},
                # b1 1800 s, b2 10800 s: p90 at rank 0.9: 1800 + 0.9 * 9000.
                "time_to_reach": {"count": 2, "median_seconds": 6300.0, "p90_seconds": 9900.0},
                "sla": {"closed": 2, "reached_within": 1, "share": 0.5},
                "same_agent_reaches": 1,
            },
        ),
        (
            "support",
            {
                "contacts": {},
                "missed_calls": 0,
                "callbacks": {"created": 3, "completed": 1, "failed": 1, "expired": 1},
                "time_to_reach": {"count": 1, "median_seconds": 2400.0, "p90_seconds": 2400.0},
                "sla": {"closed": 3, "reached_within": 1, "share": pytest.approx(1 / 3)},
                "same_agent_reaches": 1,
            },
        ),
        (
            # The callback from before queues, and nothing else.
            "default",
            {
                "contacts": {},
                "missed_calls": 0,
                "callbacks": {"created": 1, "completed": 1, "failed": 0, "expired": 0},
                "time_to_reach": {"count": 1, "median_seconds": 3600.0, "p90_seconds": 3600.0},
                "sla": {"closed": 1, "reached_within": 1, "share": 1.0},
                "same_agent_reaches": 0,
            },
        ),
        # Unknown queues are not an error: nothing is theirs.
        ("nosuch", NOTHING),
        ("Billing Line", NOTHING),
    ],
)
async def test_one_queue(
    seeded: AsyncClient, reader: dict[str, str], queue: str, expected: dict[str, Any]
) -> None:
    body = await _stats(seeded, reader, queue=queue)
    assert body["queue"] == queue
    assert body["agent_id"] is None
    assert _figures(body) == expected


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (
            "anna",
            {
                # Contacts are the customers' doing and name no agent.
                "contacts": {},
                "missed_calls": 0,
                # She closed b1 and d1 (reached) and s2 (failed); callbacks are created by
                # the system.
                "callbacks": {"created": 0, "completed": 2, "failed": 1, "expired": 0},
                # b1 1800 s, d1 3600 s: p90 1800 + 0.9 * 1800.
                "time_to_reach": {"count": 2, "median_seconds": 2700.0, "p90_seconds": 3420.0},
                "sla": {"closed": 3, "reached_within": 2, "share": pytest.approx(2 / 3)},
                "same_agent_reaches": 1,
            },
        ),
        (
            "bob",
            {
                "contacts": {},
                "missed_calls": 0,
                "callbacks": {"created": 0, "completed": 2, "failed": 0, "expired": 0},
                # s1 2400 s, b2 10800 s: p90 2400 + 0.9 * 8400.
                "time_to_reach": {"count": 2, "median_seconds": 6600.0, "p90_seconds": 9960.0},
                "sla": {"closed": 2, "reached_within": 1, "share": 0.5},
                "same_agent_reaches": 1,
            },
        ),
        ("carol", NOTHING),
    ],
)
async def test_one_agent(
    seeded: AsyncClient,
    reader: dict[str, str],
    callback_peer: StandInCallback,
    agent: str,
    expected: dict[str, Any],
) -> None:
    body = await _stats(seeded, reader, agent_id=agent)
    assert (body["queue"], body["agent_id"]) == (None, agent)
    # Across queues: the site zone, and callback is not asked.
    assert body["timezone"] == SITE_ZONE
    assert callback_peer.paths == []
    assert _figures(body) == expected


async def test_one_agent_in_one_queue(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="billing", agent_id="anna")
    assert _figures(body) == {
        "contacts": {},
        "missed_calls": 0,
        "callbacks": {"created": 0, "completed": 1, "failed": 0, "expired": 0},
        "time_to_reach": {"count": 1, "median_seconds": 1800.0, "p90_seconds": 1800.0},
        "sla": {"closed": 1, "reached_within": 1, "share": 1.0},
        "same_agent_reaches": 1,
    }


async def test_the_queues_add_up_to_the_whole(seeded: AsyncClient, reader: dict[str, str]) -> None:
    whole = await _stats(seeded, reader)
    parts = [await _stats(seeded, reader, queue=q) for q in ("billing", "support", "default")]
    for field_ in ("created", "completed", "failed", "expired"):
        assert sum(p["callbacks"][field_] for p in parts) == whole["callbacks"][field_]
    assert sum(p["sla"]["closed"] for p in parts) == whole["sla"]["closed"]
    assert sum(p["same_agent_reaches"] for p in parts) == whole["same_agent_reaches"]


async def test_a_queue_s_days_are_its_own_zone_s(
    seeded: AsyncClient, reader: dict[str, str], callback_peer: StandInCallback, internal_key: str
) -> None:
    stockholm_days = {"from": "2026-11-16T00:00:00+01:00", "to": "2026-11-18T00:00:00+01:00"}
    body = await _stats(seeded, reader, queue="billing", **stockholm_days)
    assert body["timezone"] == STOCKHOLM
    monday, tuesday = body["buckets"]
    assert (monday["local_start"], monday["start"]) == (
        "2026-11-16T00:00:00+01:00",
        "2026-11-15T23:00:00Z",
    )
    # m3 and b2 came at 23.30 and 23.31 Monday in Stockholm (Tuesday in Helsinki).
    assert (monday["missed_calls"], monday["callbacks"]["created"]) == (2, 2)
    assert (tuesday["missed_calls"], tuesday["callbacks"]["created"]) == (0, 0)
    assert tuesday["callbacks"]["completed"] == 1  # b2, 02.30 Tuesday
    # Demand by the queue's hours: m1 at 09.00, m3 at 23.30, both on Monday.
    hours = {
        (day, hour): n for day, row in enumerate(body["demand"]) for hour, n in enumerate(row) if n
    }
    assert hours == {(0, 9): 1, (0, 23): 1}

    # Asked with the internal key, once: the answer is kept for the next request.
    await _stats(seeded, reader, queue="billing", **stockholm_days)
    assert callback_peer.paths == ["/v1/queues/billing"]
    assert callback_peer.authorizations == [f"Bearer {internal_key}"]


async def test_queues_without_a_zone_and_unknown_queues_use_the_site_zone(
    seeded: AsyncClient, reader: dict[str, str], callback_peer: StandInCallback
) -> None:
    # `support` sets no zone of its own; `nosuch` is unknown to callback (404).
    assert (await _stats(seeded, reader, queue="support"))["timezone"] == SITE_ZONE
    assert (await _stats(seeded, reader, queue="nosuch"))["timezone"] == SITE_ZONE
    assert (await _stats(seeded, reader, queue="sales"))["timezone"] == "Europe/Tallinn"
    # A name that cannot be a queue key is not worth asking about.
    assert (await _stats(seeded, reader, queue="Billing Line"))["timezone"] == SITE_ZONE
    assert callback_peer.paths == [
        "/v1/queues/support",
        "/v1/queues/nosuch",
        "/v1/queues/sales",
    ]


async def test_without_callback_a_queue_s_figures_use_the_site_zone(
    callback_down: AsyncClient, internal: dict[str, str], reader: dict[str, str]
) -> None:
    response = await callback_down.post(
        "/v1/events:batch", json={"events": DATASET}, headers=internal
    )
    assert response.status_code == 200, response.text
    body = await _stats(callback_down, reader, queue="billing")
    # The zone used is stated; the days are Helsinki's, so m3 (00.30) falls on Tuesday.
    assert body["timezone"] == SITE_ZONE
    monday, tuesday = body["buckets"]
    assert monday["local_start"] == "2026-11-16T00:00:00+02:00"
    assert (monday["missed_calls"], tuesday["missed_calls"]) == (1, 1)
    assert body["missed_calls"] == 2


async def test_zones_are_kept_a_while_and_failures_briefly(callback_peer: StandInCallback) -> None:
    now = 0.0
    async with httpx.AsyncClient(base_url=callback_peer.url) as http:
        zones = QueueZones(http, site_zone=SITE_ZONE, cache_seconds=60, clock=lambda: now)
        assert await zones.zone_of("billing") == STOCKHOLM
        now = 59.0
        assert await zones.zone_of("billing") == STOCKHOLM
        assert len(callback_peer.paths) == 1
        # Past the minute callback is asked again; failing, it gets the site zone...
        now, callback_peer.failing = 61.0, True
        assert await zones.zone_of("billing") == SITE_ZONE
        # ...and is left alone for five seconds, then asked again.
        now = 65.0
        assert await zones.zone_of("billing") == SITE_ZONE
        assert len(callback_peer.paths) == 2
        now, callback_peer.failing = 66.5, False
        assert await zones.zone_of("billing") == STOCKHOLM
        assert len(callback_peer.paths) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"queue": "q" * 41},
        {"queue": ""},
        {"queue": "bill\x00ing"},
        {"agent_id": "a" * 65},
        {"agent_id": ""},
        {"agent_id": "an\x00na"},
    ],
)
async def test_bad_filters_are_422(
    client: AsyncClient,
    reader: dict[str, str],
    callback_peer: StandInCallback,
    params: dict[str, str],
) -> None:
    response = await client.get("/v1/stats", params={**WHOLE, **params}, headers=reader)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (field_,) = params
    assert response.json()["errors"][0]["loc"] == ["query", field_]
    assert callback_peer.paths == []


async def test_filters_at_their_longest_are_fine(
    client: AsyncClient, reader: dict[str, str]
) -> None:
    body = await _stats(client, reader, queue="q" * 40, agent_id="a" * 64)
    assert _figures(body) == NOTHING


async def test_the_profile_shows_each_callback_s_queue(
    seeded: AsyncClient, reader: dict[str, str]
) -> None:
    found = await seeded.get("/v1/customers", params={"phone": "0401000001"}, headers=reader)
    (customer,) = found.json()["items"]
    profile = (await seeded.get(f"/v1/customers/{customer['id']}", headers=reader)).json()
    assert [(c["id"], c["queue"]) for c in profile["recent_callbacks"]] == [("b1", "billing")]
    found = await seeded.get("/v1/customers", params={"phone": "0401000006"}, headers=reader)
    (customer,) = found.json()["items"]
    profile = (await seeded.get(f"/v1/customers/{customer['id']}", headers=reader)).json()
    assert [(c["id"], c["queue"]) for c in profile["recent_callbacks"]] == [("d1", "default")]


# The migration: events stored before revision 0005 -------------------------------------------

# Events the backfill and ingest must read alike: (event, the queue and agent expected).
BOTH_WAYS: list[tuple[dict[str, Any], tuple[str | None, str | None]]] = [
    (lifecycle("callback_created", "m1", "2026-11-16T08:00:00Z", "0402000001"), ("default", None)),
    (
        lifecycle(
            "callback_completed",
            "m1",
            "2026-11-16T09:00:00Z",
            "0402000001",
            agent="anna",
            queue="billing",
            agent_id=None,
        ),
        ("billing", "anna"),
    ),
    # An agent action recorded without the agent's id: the state's `agent_id` tells.
    (
        {
            **lifecycle(
                "callback_claimed",
                "m2",
                "2026-11-16T08:00:00Z",
                "0402000002",
                queue="support",
                agent_id="bob",
            ),
            "actor": {"kind": "agent"},
        },
        ("support", "bob"),
    ),
    (
        {
            **lifecycle("callback_claimed", "m2", "2026-11-16T08:01:00Z", "0402000002"),
            "actor": {"kind": "agent", "id": ""},
        },
        ("default", None),
    ),
    # Values that are not a queue key or an agent id: as if absent.
    (
        lifecycle(
            "callback_created", "m3", "2026-11-16T08:00:00Z", "0402000003", queue="Not A Key"
        ),
        ("default", None),
    ),
    (
        lifecycle("callback_created", "m4", "2026-11-16T08:00:00Z", "0402000004", queue="a\n"),
        ("default", None),
    ),
    (
        lifecycle("callback_created", "m5", "2026-11-16T08:00:00Z", "0402000005", queue=5),
        ("default", None),
    ),
    (
        lifecycle("callback_claimed", "m6", "2026-11-16T08:00:00Z", "0402000006", agent_id=42),
        ("default", None),
    ),
    (
        lifecycle(
            "callback_claimed", "m7", "2026-11-16T08:00:00Z", "0402000007", agent_id="x" * 65
        ),
        ("default", None),
    ),
    (
        lifecycle(
            "callback_claimed", "m8", "2026-11-16T08:00:00Z", "0402000008", agent_id="x" * 64
        ),
        ("default", "x" * 64),
    ),
    # Not about a callback: a queue only when a well-formed key was named.
    (missed("2026-11-16T08:00:00Z", "0402000009", queue="billing"), ("billing", None)),
    (missed("2026-11-16T08:00:00Z", "0402000010", queue="Support Line"), (None, None)),
    (missed("2026-11-16T08:00:00Z", "0402000011"), (None, None)),
    (
        make_event(
            type="note",
            direction="internal",
            customer={"phone": "0402000012"},
            actor={"kind": "agent", "id": "anna"},
        ),
        (None, "anna"),
    ),
]


@pytest.fixture
def before_0005() -> Iterator[infra.TestDatabase]:
    """A database of its own, history migrated up to revision 0004 only."""
    # Not the run's shared database: that one is at the newest revision already.
    with infra.test_database() as db:
        upgrade(db.url, ["auth"])
        command.upgrade(alembic_config("history", db.url), "0004")
        yield db


async def _insert_as_before(engine: AsyncEngine, events: list[dict[str, Any]]) -> None:
    """Store events as revision 0004's history did: the same columns, no queue or agent."""
    async with engine.begin() as conn:
        for event in events:
            customer_id = new_id()
            await conn.execute(
                text(
                    "INSERT INTO history.customers (id, created_at, updated_at)"
                    " VALUES (:id, now(), now())"
                ),
                {"id": customer_id},
            )
            subject, actor = event.get("subject") or {}, event.get("actor") or {}
            await conn.execute(
                text(
                    "INSERT INTO history.events (id, customer_id, occurred_at, received_at,"
                    " channel, direction, type, subject_kind, subject_id, actor_kind, actor_id,"
                    " summary, data) VALUES (:id, :customer_id, :occurred_at, now(), :channel,"
                    " :direction, :type, :subject_kind, :subject_id, :actor_kind, :actor_id,"
                    " :summary, CAST(:data AS jsonb))"
                ),
                {
                    "id": event["id"],
                    "customer_id": customer_id,
                    "occurred_at": datetime.fromisoformat(event["occurred_at"]),
                    "channel": event["channel"],
                    "direction": event["direction"],
                    "type": event["type"],
                    "subject_kind": subject.get("kind"),
                    "subject_id": subject.get("id"),
                    "actor_kind": actor.get("kind"),
                    "actor_id": actor.get("id"),
                    "summary": event["summary"],
                    "data": json.dumps(event["data"]),
                },
            )


async def _columns(engine: AsyncEngine, ids: list[str]) -> list[tuple[str | None, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, queue, agent_id FROM history.events WHERE id = ANY(:ids)"),
            {"ids": ids},
        )
        found = {row[0]: (row[1], row[2]) for row in rows}
    return [found[i] for i in ids]


async def test_the_migration_files_old_events_as_ingest_files_new_ones(
    before_0005: infra.TestDatabase, settings_kwargs: dict[str, Any]
) -> None:
    settings = CommonSettings(database_url=before_0005.url)
    engine = create_engine(settings, application_name="ringback.tests.migration")
    try:
        old = [{**event, "id": new_id()} for event, _ in BOTH_WAYS]
        await _insert_as_before(engine, old)
        await asyncio.to_thread(command.upgrade, alembic_config("history", before_0005.url), "head")
        expected = [columns for _, columns in BOTH_WAYS]
        assert await _columns(engine, [e["id"] for e in old]) == expected

        async with create_session_factory(engine)() as session:
            _, key = await create_key(session, name="test", scopes=["internal", "history:read"])
            await session.commit()
        headers = {"Authorization": f"Bearer {key}"}
        app = create_app(
            history_settings(
                {**settings_kwargs, "database_url": before_0005.url},
                callback_url=f"http://127.0.0.1:{infra.free_port()}",
            )
        )
        async for http in serve_asgi(app):
            # Events stored before queues existed count as the `default` queue's: the
            # `callback_created` of m1, m3, m4 and m5.
            body = await _stats(http, headers, queue="default")
            assert body["callbacks"]["created"] == 4
            assert (await _stats(http, headers, queue="billing"))["missed_calls"] == 1

            # The same events through today's ingest.
            new = [{**event, "id": new_id()} for event, _ in BOTH_WAYS]
            stored = await http.post("/v1/events:batch", json={"events": new}, headers=headers)
            assert stored.status_code == 200, stored.text
            assert await _columns(engine, [e["id"] for e in new]) == expected
    finally:
        await engine.dispose()
