"""`ringback staffing show QUEUE [--apply]` against callback served over HTTP."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Callback
from shared.ids import new_id
from tests.cli.conftest import RunCli
from tests.support.live import LiveServer

MakeKey = Callable[..., Awaitable[str]]
HELSINKI = ZoneInfo("Europe/Helsinki")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def _demand(sessions: async_sessionmaker[AsyncSession]) -> None:
    """30 callbacks at 10-11 every day of the last 8 weeks: 3 Erlangs at 6 minutes each."""
    today = datetime.now(HELSINKI).date()
    rows = []
    for back in range(1, 57):
        day = today - timedelta(days=back)
        for i in range(30):
            moment = datetime(day.year, day.month, day.day, 10, i, tzinfo=HELSINKI).astimezone(UTC)
            rows.append(
                Callback(
                    id=new_id(), phone=f"+3584030{back:02d}{i:03d}", queue="billing",
                    language="fi", status="completed", outcome="reached", source="missed_call",
                    channel="phone", priority=0, first_contact_at=moment, due_at=moment,
                    sla_deadline=moment + timedelta(hours=2), contact_count=1,
                    consent_sms=True, consent_email=True, asap=True, booking_seq=0,
                    attempt_count=1, closed_at=moment, created_at=moment, updated_at=moment,
                )
            )  # fmt: skip
    async with sessions() as session:
        session.add_all(rows)
        await session.commit()


async def test_show_then_apply_writes_the_agents_needed_into_the_plan(
    callback_server: LiveServer,
    make_key: MakeKey,
    run_cli: RunCli,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    key = await make_key("admin")
    env = {"RINGBACK_CALLBACK_URL": callback_server.url, "RINGBACK_ADMIN_API_KEY": key}
    headers = {"authorization": f"Bearer {key}"}
    plan: dict[str, Any] = {
        "business_hours": {day: [{"start": "08:00", "end": "16:00"}] for day in DAYS},
        "default_agents": 1,
    }
    async with httpx.AsyncClient(base_url=callback_server.url, headers=headers) as api:
        created = await api.put(
            "/v1/queues/billing",
            json={"name": "Laskutus", "timezone": "Europe/Helsinki", "capacity": plan},
        )
        assert created.status_code == 201, created.text
    await _demand(sessions)

    shown = await run_cli("staffing", "show", "billing", env=env)

    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert lines[0].startswith("queue billing (Europe/Helsinki): simulation, 80% within 120 min")
    rows = [re.split(r" {2,}", line.strip()) for line in lines[1:]]
    assert rows[0] == ["HOUR", "FORECAST", "NEEDED", "PLANNED", "GAP"]
    at_ten = [row for row in rows[1:] if row[0].endswith("10:00")]
    # 30 a day at 6 minutes is A = 3; at most 85 % busy asks for 4; the plan has 1.
    assert len(at_ten) == 7
    assert all(row[1:] == ["30", "4", "1", "+3"] for row in at_ten)

    applied = await run_cli("staffing", "show", "billing", "--apply", env=env)

    assert applied.code == 0, applied.err
    assert "applying to the plan (weekday and hour):" in applied.out
    assert "  tue 10:00: 1 -> 4 agents" in applied.out
    async with httpx.AsyncClient(base_url=callback_server.url, headers=headers) as api:
        stored = (await api.get("/v1/queues/billing")).json()["capacity"]
    # Every weekday: 4 at ten, none in the open hours nobody called in.
    expected = {str(hour): 4 if hour == 10 else 0 for hour in range(8, 16)}
    assert stored["agents"] == dict.fromkeys(DAYS, expected)

    again = await run_cli("staffing", "show", "billing", "--apply", env=env)
    assert again.code == 0, again.err
    assert "the plan already has the agents needed; nothing to apply" in again.out


async def test_apply_without_a_plan_says_what_to_do(
    callback_server: LiveServer, make_key: MakeKey, run_cli: RunCli
) -> None:
    key = await make_key("admin")
    env = {"RINGBACK_CALLBACK_URL": callback_server.url, "RINGBACK_ADMIN_API_KEY": key}

    run = await run_cli("staffing", "show", "default", "--apply", env=env)

    assert run.code == 1
    assert "error: queue default has no capacity plan; give it business hours first" in run.err
