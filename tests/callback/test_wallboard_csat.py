"""The wallboard's CSAT (§13): today's survey answers of the queue against its goal, counted
as history's stats count them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import Survey
from services.callback.wallboard import CSAT_NEAR_MARGIN, verdict
from shared.vocabulary import GoalVerdict
from tests.callback.conftest import InsertCallbacks

HELSINKI = ZoneInfo("Europe/Helsinki")


async def _board(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]], queue: str
) -> dict[str, Any]:
    reader = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    response = await client.get("/v1/wallboard", params={"queue": queue}, headers=reader)
    assert response.status_code == 200, response.text
    csat: dict[str, Any] = response.json()["csat"]
    return csat


async def test_today_s_answers_against_the_goal(
    client: AsyncClient,
    admin: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
    sessions: async_sessionmaker[AsyncSession],
    insert_callbacks: InsertCallbacks,
) -> None:
    body = {"name": "Laskutus", "timezone": "Europe/Helsinki", "goals": {"csat_average": 4.3}}
    response = await client.put("/v1/queues/billing", json=body, headers=admin)
    assert response.status_code in (200, 201), response.text
    now = datetime.now(UTC)
    midnight = datetime.combine(now.astimezone(HELSINKI).date(), datetime.min.time(), HELSINKI)
    # Answered "today": a second ago, or just after midnight if the day is younger than that.
    today = max(now - timedelta(seconds=1), midnight.astimezone(UTC) + timedelta(seconds=1))
    yesterday = midnight.astimezone(UTC) - timedelta(minutes=1)
    made = await insert_callbacks(5, queue="billing", status="completed", outcome="reached")
    other = await insert_callbacks(1, phone="+358409999999", status="completed", outcome="reached")

    def survey(
        callback_id: str, score: int | None, answered_at: datetime | None, **more: Any
    ) -> Survey:
        return Survey(
            callback_id=callback_id,
            queue=more.get("queue", "billing"),
            agent_id="anna",
            phone="+358401000000",
            channel="sms",
            status="answered" if score is not None else "sent",
            sent_at=midnight.astimezone(UTC) - timedelta(hours=1),
            answered_at=answered_at,
            score=score,
        )

    async with sessions() as session:
        session.add_all(
            [
                # Today: 5, 4 and 3.
                survey(made[0], 5, today),
                survey(made[1], 4, today),
                survey(made[2], 3, today),
                # Not today's, not answered, or another queue's: not counted.
                survey(made[3], 1, yesterday),
                survey(made[4], None, None),
                survey(other[0], 1, today, queue="default"),
            ]
        )
        await session.commit()

    # (5 + 4 + 3) / 3 = 4.0: short of 4.3 by more than the amber margin (0.2 of the scale).
    assert await _board(client, make_key, "billing") == {
        "average": 4.0,
        "responses": 3,
        "goal": 4.3,
        "verdict": "missed",
    }
    # The default queue sets no goal: its one answer, no verdict.
    assert await _board(client, make_key, "default") == {
        "average": 1.0,
        "responses": 1,
        "goal": None,
        "verdict": None,
    }


def test_amber_is_the_same_share_of_each_scale() -> None:
    # 5 % of the scale: 5 points of a 0-1 share, 0.2 of a 1-5 average.
    assert verdict(0.76, 0.8) == GoalVerdict.NEAR
    assert verdict(0.74, 0.8) == GoalVerdict.MISSED
    assert verdict(4.1, 4.2, CSAT_NEAR_MARGIN) == GoalVerdict.NEAR
    assert verdict(3.9, 4.2, CSAT_NEAR_MARGIN) == GoalVerdict.MISSED
    assert verdict(4.2, 4.2, CSAT_NEAR_MARGIN) == GoalVerdict.MET
