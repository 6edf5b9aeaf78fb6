"""`GET /v1/stats` as people type it: no range means today, and an unencoded `+` still works."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from services.history.app import create_app
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.history.test_stats_by_queue import StandInCallback, stand_in_callback

# A whole day apart at every moment, so a day taken in the wrong zone is always another day.
SITE_ZONE = ZoneInfo("Pacific/Kiritimati")  # UTC+14
QUEUE_ZONE = ZoneInfo("Pacific/Honolulu")  # UTC-10


@pytest.fixture
def callback_peer() -> Iterator[StandInCallback]:
    with stand_in_callback({"hawaii": {"timezone": QUEUE_ZONE.key}}) as peer:
        yield peer


@pytest.fixture
async def client(
    clean_db: None, settings_kwargs: dict[str, Any], callback_peer: StandInCallback
) -> AsyncIterator[AsyncClient]:
    settings = history_settings(
        settings_kwargs, site_timezone=SITE_ZONE.key, callback_url=callback_peer.url
    )
    async for http in serve_asgi(create_app(settings)):
        yield http


def _today(zone: ZoneInfo) -> tuple[datetime, datetime]:
    day = datetime.now(zone).date()
    start = datetime.combine(day, time(), tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def _bounds(body: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])


async def _stats_around(
    ask: Callable[[], Any], zone: ZoneInfo
) -> tuple[dict[str, Any], list[tuple[datetime, datetime]]]:
    """The answer, and today's bounds as they were before and after it (midnight may pass)."""
    before = _today(zone)
    answer = await ask()
    after = _today(zone)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body, [before, after]


async def test_without_from_and_to_the_figures_are_todays_in_the_site_zone(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    for at in (now, now - timedelta(days=2)):
        event = make_event(occurred_at=at.isoformat().replace("+00:00", "Z"))
        assert (await client.post("/v1/events", json=event, headers=writer)).status_code == 201

    body, today = await _stats_around(lambda: client.get("/v1/stats", headers=reader), SITE_ZONE)

    assert _bounds(body) in today
    assert body["timezone"] == SITE_ZONE.key
    assert body["missed_calls"] == 1
    assert len(body["buckets"]) == 1
    hourly, today = await _stats_around(
        lambda: client.get("/v1/stats", params={"bucket": "hour"}, headers=reader), SITE_ZONE
    )
    assert _bounds(hourly) in today
    assert len(hourly["buckets"]) == 24


async def test_one_queues_default_day_is_the_queues(
    client: AsyncClient, reader: dict[str, str]
) -> None:
    body, today = await _stats_around(
        lambda: client.get("/v1/stats", params={"queue": "hawaii"}, headers=reader), QUEUE_ZONE
    )

    assert _bounds(body) in today
    assert body["timezone"] == QUEUE_ZONE.key


async def test_a_bound_left_out_is_taken_from_today(
    client: AsyncClient, reader: dict[str, str]
) -> None:
    week_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=7)
    since, today = await _stats_around(
        lambda: client.get("/v1/stats", params={"from": week_ago.isoformat()}, headers=reader),
        SITE_ZONE,
    )
    assert _bounds(since)[0] == week_ago
    assert _bounds(since)[1] in [end for _, end in today]

    until = today[1][1] - timedelta(hours=1)
    answer = await client.get("/v1/stats", params={"to": until.isoformat()}, headers=reader)
    assert answer.status_code == 200, answer.text
    assert _bounds(answer.json())[1] == until
    assert _bounds(answer.json())[0] in [start for start, _ in today]


async def test_an_unencoded_plus_in_the_offset_is_read_as_a_plus(
    client: AsyncClient, reader: dict[str, str]
) -> None:
    expected = (datetime(2026, 12, 4, 22, tzinfo=UTC), datetime(2026, 12, 5, 22, tzinfo=UTC))
    # As typed into a browser's address bar or curl: `+` is a space to a query string.
    typed = await client.get(
        "/v1/stats?from=2026-12-05T00:00:00+02:00&to=2026-12-06T00:00:00+02:00", headers=reader
    )
    assert typed.status_code == 200, typed.text
    assert _bounds(typed.json()) == expected
    for start, end in (
        ("2026-12-05T00:00:00 02:00", "2026-12-06T00:00:00 0200"),
        ("2026-12-05T00:00:00+02:00", "2026-12-06T00:00:00+02:00"),
        ("2026-12-04T22:00:00Z", "2026-12-05T22:00:00Z"),
    ):
        answer = await client.get("/v1/stats", params={"from": start, "to": end}, headers=reader)
        assert answer.status_code == 200, (start, answer.text)
        assert _bounds(answer.json()) == expected


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "2026-12-05T00:00:00",  # naive: whose midnight?
        "2026-12-05 00:00",  # naive too: the space is the date's, not an offset's
        "2026-12-05T00:00:00  02:00",
        "2026-12-05T00:00:00 02:00 junk",
        "2026-12-05",
        "",
    ],
)
async def test_garbage_is_still_a_422_that_shows_the_form_to_send(
    value: str, client: AsyncClient, reader: dict[str, str]
) -> None:
    answer = await client.get(
        "/v1/stats", params={"from": value, "to": "2026-12-06T00:00:00Z"}, headers=reader
    )

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["loc"] == ["query", "from"]
    assert "2026-12-05T00:00:00Z" in error["msg"]
