"""The wallboard: every figure against a hand-built queue, and the live stream over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.app import create_app
from services.callback.models import Agent, PromiseMark
from services.callback.settings import CallbackSettings
from services.callback.wallboard import verdict
from shared.vocabulary import GoalVerdict
from tests.callback.conftest import InsertCallbacks
from tests.support.live import live

HELSINKI = ZoneInfo("Europe/Helsinki")
MINUTE = timedelta(minutes=1)


async def _queue(client: AsyncClient, admin: dict[str, str], **goals: Any) -> None:
    body = {"name": "Laskutus", "timezone": "Europe/Helsinki", "goals": goals}
    response = await client.put("/v1/queues/billing", json=body, headers=admin)
    assert response.status_code in (200, 201), response.text


async def _agents(
    sessions: async_sessionmaker[AsyncSession], rows: list[tuple[str, str, str]]
) -> None:
    async with sessions() as session:
        session.add_all(
            Agent(id=agent_id, name=agent_id, queues=[queue], languages=[], presence=presence)
            for agent_id, queue, presence in rows
        )
        await session.commit()


async def test_each_figure_matches_a_hand_built_queue(
    client: AsyncClient,
    admin: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    await _queue(client, admin, sla_share=0.8, csat_average=4.2)
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(HELSINKI).date(), datetime.min.time(), HELSINKI)
    # Closed "today": a minute ago, or just after midnight if the day is younger than that.
    today = max(now - MINUTE, midnight.astimezone(UTC) + timedelta(seconds=1))

    async def one(phone: str, **values: Any) -> str:
        (made,) = await insert_callbacks(1, phone=phone, queue="billing", **values)
        return made

    # Waiting: due now (deadline in 2 h), overdue since 10 minutes (3 h since first contact),
    # and a retry later whose deadline falls within the hour.
    due = await one("+358401000001", first_contact_at=now - 30 * MINUTE)
    overdue = await one(
        "+358401000002",
        first_contact_at=now - 180 * MINUTE,
        due_at=now - 180 * MINUTE,
        sla_deadline=now - 10 * MINUTE,
    )
    later = await one("+358401000003", due_at=now + 180 * MINUTE, sla_deadline=now + 30 * MINUTE)
    # Held by agent a2 and by an agent the roster does not know: being worked, not waiting.
    held = {"status": "in_progress", "lease_expires_at": now + 10 * MINUTE}
    await one("+358401000004", agent_id="a2", **held)
    await one("+358401000005", agent_id="u1", **held)
    # Another queue's overdue callback counts nowhere here.
    await insert_callbacks(1, phone="+358401000006", sla_deadline=now - MINUTE)
    # Closed today: reached in time, reached after the deadline, failed; a cancelled one is
    # not counted, nor one reached yesterday.
    closed = {"due_at": now - 120 * MINUTE, "sla_deadline": today + MINUTE}
    in_time = await one(
        "+358401000007", status="completed", outcome="reached", closed_at=today, **closed
    )
    await one(
        "+358401000008",
        status="completed",
        outcome="reached_inbound",
        closed_at=today,
        **{**closed, "sla_deadline": today - MINUTE},
    )
    await one(
        "+358401000009", status="failed", outcome="attempts_exhausted", closed_at=today, **closed
    )
    await one(
        "+358401000010",
        status="cancelled",
        outcome="cancelled_by_customer",
        closed_at=today,
        **closed,
    )
    await one(
        "+358401000011",
        status="completed",
        outcome="reached",
        closed_at=midnight.astimezone(UTC) - MINUTE,
        **closed,
    )
    await _agents(
        sessions,
        [
            ("a1", "billing", "available"),
            ("a2", "billing", "available"),
            ("a3", "billing", "break"),
            ("a4", "billing", "wrap_up"),
            ("a5", "billing", "offline"),
            ("a6", "default", "available"),
        ],
    )
    async with sessions() as session:
        session.add_all(
            PromiseMark(callback_id=cid, queue="billing", promised_by=now, at_risk=risk)
            for cid, risk in ((due, True), (overdue, True), (later, False), (in_time, True))
        )
        await session.commit()

    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    response = await client.get("/v1/wallboard", params={"queue": "billing"}, headers=reader)
    assert response.status_code == 200, response.text
    board = response.json()

    assert board["waiting"] | {"longest_wait_seconds": None, "longest_waiting_since": None} == {
        "waiting": 3,
        "overdue": 1,
        "due_next_hour": 1,
        "longest_wait_seconds": None,
        "longest_waiting_since": None,
    }
    assert 180 * 60 <= board["waiting"]["longest_wait_seconds"] < 181 * 60
    # a1 available; a2 holding a claim, a4 wrapping up and u1 (not on the roster) holding
    # one of this queue's; a3 on a break; a5 offline and a6 of another queue not counted.
    assert board["agents"] == {"available": 1, "on_callback": 3, "on_break": 1}
    assert board["sla"] == {
        "closed": 3,
        "reached_within": 1,
        "share": 1 / 3,
        "goal": 0.8,
        "verdict": "missed",
    }
    assert board["csat"] == {"average": None, "responses": 0, "goal": 4.2, "verdict": None}
    assert board["promises_at_risk"] == 2
    assert board["timezone"] == "Europe/Helsinki"
    assert datetime.fromisoformat(board["day_start"]) == midnight


async def test_the_default_queue_and_bad_requests(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]]
) -> None:
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    empty = (await client.get("/v1/wallboard", headers=reader)).json()
    assert empty["queue"] == "default"
    assert empty["sla"]["share"] is None
    assert empty["sla"]["verdict"] is None
    assert empty["waiting"]["longest_wait_seconds"] is None

    missing = await client.get("/v1/wallboard", params={"queue": "nosuch"}, headers=reader)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    bad = await client.get("/v1/wallboard", params={"queue": "Not A Key"}, headers=reader)
    assert bad.status_code == 422
    assert (await client.get("/v1/wallboard")).status_code == 401
    writer = {"Authorization": f"Bearer {await make_key('intake:write')}"}
    assert (await client.get("/v1/wallboard", headers=writer)).status_code == 403


def test_verdicts_are_green_amber_red_against_the_goal() -> None:
    assert verdict(0.8, 0.8) is GoalVerdict.MET
    assert verdict(0.76, 0.8) is GoalVerdict.NEAR
    assert verdict(0.74, 0.8) is GoalVerdict.MISSED
    assert verdict(None, 0.8) is None
    assert verdict(0.5, None) is None


async def _next_board(lines: Any, seconds: float) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        event = None
        async for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "wallboard":
                data: dict[str, Any] = json.loads(line.split(":", 1)[1])
                return data
    raise AssertionError("the stream ended")


async def test_the_stream_shows_a_new_callback_within_five_seconds(
    settings: CallbackSettings,
    make_key: Callable[..., Awaitable[str]],
    insert_callbacks: InsertCallbacks,
) -> None:
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    headers = {**reader, "Accept": "text/event-stream"}
    async with (
        live(create_app(settings)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        http.stream("GET", "/v1/wallboard", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        first = await _next_board(lines, 5)
        assert first["waiting"]["waiting"] == 0
        await insert_callbacks(1)
        # §13: within 5 s of the change.
        second = await _next_board(lines, 5)
        assert second["waiting"]["waiting"] == 1
