"""`GET /v1/slots` as people type it: no range means from now to the end of tomorrow, in the
queue's zone, and an unencoded `+` in an offset still works."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from services.callback.app import create_app
from services.callback.settings import CallbackSettings
from tests.callback.helpers import plan_body, put_queue
from tests.conftest import serve_asgi

HELSINKI = ZoneInfo("Europe/Helsinki")  # the site's zone in these tests
# Twelve hours or more from Helsinki: the end of its tomorrow is never Helsinki's.
HONOLULU = ZoneInfo("Pacific/Honolulu")
HOUR = timedelta(hours=1)


def _hourly(zone: ZoneInfo | None = None) -> dict[str, Any]:
    """A plan open around the clock in one-hour slots (the queue's zone when `zone` is None)."""
    plan = plan_body(slot_minutes=60)
    if zone is None:
        del plan["timezone"]
    else:
        plan["timezone"] = zone.key
    return plan


def _starts(body: dict[str, Any]) -> list[datetime]:
    return [datetime.fromisoformat(slot["start"]) for slot in body["items"]]


def _hours(start: datetime, end: datetime) -> list[datetime]:
    """The whole UTC hours in `[start, end)`: the slots of an hourly plan open all day."""
    first = start.replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += HOUR
    out = []
    while first < end:
        out.append(first)
        first += HOUR
    return out


def _end_of_tomorrow(zone: ZoneInfo, now: datetime) -> datetime:
    day = now.astimezone(zone).date() + timedelta(days=2)
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


async def _slots(client: AsyncClient, auth: dict[str, str], **params: str) -> dict[str, Any]:
    answer = await client.get("/v1/slots", params=params, headers=auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def _expect_now_to_end_of_tomorrow(
    client: AsyncClient, auth: dict[str, str], zone: ZoneInfo, **params: str
) -> None:
    before = datetime.now(UTC)
    body = await _slots(client, auth, **params)
    after = datetime.now(UTC)
    assert body["timezone"] == zone.key
    # The clock moved during the request: the answer is the one of some moment in between.
    candidates = [_hours(moment, _end_of_tomorrow(zone, moment)) for moment in (before, after)]
    assert _starts(body) in candidates, (_starts(body)[:2], _starts(body)[-2:])


async def test_without_from_and_to_the_slots_run_from_now_to_the_end_of_tomorrow(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    assert (
        await client.put("/v1/capacity", json=_hourly(HELSINKI), headers=admin)
    ).status_code == 200
    await put_queue(client, admin, "hawaii", timezone=HONOLULU.key, capacity=_hourly())

    await _expect_now_to_end_of_tomorrow(client, auth, HELSINKI)
    await _expect_now_to_end_of_tomorrow(client, auth, HONOLULU, queue="hawaii")


async def test_a_bound_left_out_is_filled_in(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    await put_queue(client, admin, "hawaii", timezone=HONOLULU.key, capacity=_hourly())
    # `from` alone: to the end of the day after its own, in the queue's zone.
    start = datetime(2026, 12, 5, 7, 30, tzinfo=HONOLULU)
    body = await _slots(client, auth, queue="hawaii", **{"from": start.isoformat()})
    end = datetime(2026, 12, 7, tzinfo=HONOLULU)
    assert _starts(body) == _hours(start.astimezone(UTC), end.astimezone(UTC))
    # `to` alone: from now.
    until = datetime.now(UTC) + timedelta(hours=5)
    body = await _slots(client, auth, queue="hawaii", to=until.isoformat())
    assert _starts(body)[-1] < until <= _starts(body)[-1] + HOUR
    assert len(body["items"]) in (4, 5)


async def test_the_default_range_is_never_longer_than_allowed(
    settings: CallbackSettings,
    clean_db: None,
    auth: dict[str, str],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    one_day = settings.model_copy(update={"slots_max_range_days": 1})
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}
    async for client in serve_asgi(create_app(one_day)):
        await put_queue(client, admin, "hawaii", timezone=HONOLULU.key, capacity=_hourly())
        before = datetime.now(UTC)
        body = await _slots(client, auth, queue="hawaii")
        after = datetime.now(UTC)
        assert _starts(body) in [_hours(m, m + timedelta(days=1)) for m in (before, after)]


@pytest.fixture
async def hawaii(client: AsyncClient, admin: dict[str, str]) -> AsyncClient:
    """Callback with a queue `hawaii` open around the clock."""
    await put_queue(client, admin, "hawaii", timezone=HONOLULU.key, capacity=_hourly())
    return client


async def test_an_unencoded_plus_in_the_offset_is_read_as_a_plus(
    hawaii: AsyncClient, auth: dict[str, str]
) -> None:
    expected = _hours(datetime(2026, 12, 4, 22, tzinfo=UTC), datetime(2026, 12, 5, 1, tzinfo=UTC))
    typed = await hawaii.get(
        "/v1/slots?queue=hawaii&from=2026-12-05T00:00:00+02:00&to=2026-12-05T03:00:00+02:00",
        headers=auth,
    )
    assert typed.status_code == 200, typed.text
    assert _starts(typed.json()) == expected
    for start, end in (
        ("2026-12-05T00:00:00 02:00", "2026-12-05T03:00:00 0200"),
        ("2026-12-04T22:00:00Z", "2026-12-05T01:00:00Z"),
    ):
        body = await _slots(hawaii, auth, queue="hawaii", **{"from": start, "to": end})
        assert _starts(body) == expected


@pytest.mark.parametrize(
    "value",
    ["garbage", "2026-12-05T00:00:00", "2026-12-05 00:00", "2026-12-05T00:00:00  02:00", ""],
)
async def test_garbage_is_still_a_422_that_shows_the_form_to_send(
    value: str, hawaii: AsyncClient, auth: dict[str, str]
) -> None:
    answer = await hawaii.get(
        "/v1/slots", params={"from": value, "to": "2026-12-06T00:00:00Z"}, headers=auth
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["loc"] == ["query", "from"]
    assert "2026-12-05T00:00:00Z" in error["msg"]


async def test_a_from_at_the_end_of_the_calendar_is_a_422_not_a_500(
    hawaii: AsyncClient, auth: dict[str, str]
) -> None:
    answer = await hawaii.get(
        "/v1/slots", params={"queue": "hawaii", "from": "9999-12-31T00:00:00Z"}, headers=auth
    )

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["query", "from"]
