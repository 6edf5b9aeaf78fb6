"""Statistics against a crafted dataset whose answers are worked out by hand below."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from services.history.stats import bucket_starts, percentile
from tests.history.conftest import make_event

HELSINKI = ZoneInfo("Europe/Helsinki")  # UTC+2 in November


def contact(at: str, channel: str, type_: str, who: str) -> dict[str, Any]:
    customer = {"email": who} if "@" in who else {"phone": who}
    return make_event(
        occurred_at=at, channel=channel, direction="inbound", type=type_, customer=customer
    )


def callback(type_: str, cb: str, at: str, who: str, **data: Any) -> dict[str, Any]:
    customer = {"email": who} if "@" in who else {"phone": who}
    return make_event(
        occurred_at=at,
        channel="phone",
        direction="internal",
        type=type_,
        customer=customer,
        subject={"kind": "callback", "id": cb},
        data={"status": type_.removeprefix("callback_"), **data},
    )


# The range: Monday 16 and Tuesday 17 November 2026 in Helsinki, 2026-11-15T22:00Z to
# 2026-11-17T22:00Z. Local times in the comments.
DATASET = [
    # Outside, just before: Sunday 23.59 local.
    contact("2026-11-15T21:59:00Z", "phone", "missed_call", "0400000001"),
    # Monday. 00.30 local (still Sunday in UTC): counts for Monday, demand Mon 0h.
    contact("2026-11-15T22:30:00Z", "phone", "missed_call", "0400000002"),
    contact("2026-11-16T07:30:00Z", "phone", "missed_call", "0400000003"),  # Mon 09.30
    contact("2026-11-16T08:10:00Z", "web", "contact_request", "b@example.fi"),  # Mon 10.10
    contact("2026-11-16T08:20:00Z", "phone", "call_answered", "0400000004"),  # Mon 10.20
    # Outbound and internal events are not contacts.
    make_event(
        occurred_at="2026-11-16T07:31:00Z",
        channel="sms",
        direction="outbound",
        type="notification_sent",
        customer={"phone": "0400000003"},
    ),
    # Tuesday.
    contact("2026-11-17T07:05:00Z", "phone", "missed_call", "0400000005"),  # Tue 09.05
    contact("2026-11-17T21:59:00Z", "email", "contact_request", "f@example.fi"),  # Tue 23.59
    # Outside, just after: Wednesday 00.00 local.
    contact("2026-11-17T22:00:00Z", "phone", "missed_call", "0400000006"),
    # cb1: first contact named on its creation; reached in 30 min, within the SLA.
    callback(
        "callback_created",
        "cb1",
        "2026-11-16T07:30:30Z",
        "0400000003",
        first_contact_at="2026-11-16T07:30:00+00:00",
        sla_deadline="2026-11-16T09:30:00+00:00",
    ),
    callback(
        "callback_completed",
        "cb1",
        "2026-11-16T08:00:00Z",
        "0400000003",
        outcome="reached",
        sla_deadline="2026-11-16T09:30:00+00:00",
    ),
    # cb2: no first_contact_at anywhere: its earliest event counts; 3 h, past the SLA.
    callback(
        "callback_created",
        "cb2",
        "2026-11-16T08:10:05Z",
        "b@example.fi",
        sla_deadline="2026-11-16T10:10:00+00:00",
    ),
    callback(
        "callback_completed", "cb2", "2026-11-16T11:10:05Z", "b@example.fi", outcome="reached"
    ),
    # cb3: created Monday 00.31 local; the completion names the first contact (in +02:00):
    # 2 h, reached_inbound, within the SLA.
    callback(
        "callback_created",
        "cb3",
        "2026-11-15T22:31:00Z",
        "0400000002",
        sla_deadline="2026-11-16T02:30:00+00:00",
    ),
    callback(
        "callback_completed",
        "cb3",
        "2026-11-16T00:30:00Z",
        "0400000002",
        outcome="reached_inbound",
        first_contact_at="2026-11-16T00:30:00+02:00",
    ),
    # cb4: failed (no answer): closed, not reached.
    callback(
        "callback_created",
        "cb4",
        "2026-11-17T07:06:00Z",
        "0400000005",
        sla_deadline="2026-11-17T09:05:00+00:00",
    ),
    callback(
        "callback_failed",
        "cb4",
        "2026-11-17T12:00:00Z",
        "0400000005",
        outcome="no_answer",
        sla_deadline="2026-11-17T09:05:00+00:00",
    ),
    # cb5: expired.
    callback(
        "callback_created",
        "cb5",
        "2026-11-17T08:00:00Z",
        "f@example.fi",
        sla_deadline="2026-11-17T10:00:00+00:00",
    ),
    callback(
        "callback_expired",
        "cb5",
        "2026-11-17T10:00:01Z",
        "f@example.fi",
        sla_deadline="2026-11-17T10:00:00+00:00",
    ),
    # cb6: reached in 30 min, but no SLA deadline known: not in the SLA share.
    callback("callback_created", "cb6", "2026-11-17T08:30:00Z", "0400000007"),
    callback("callback_completed", "cb6", "2026-11-17T09:00:00Z", "0400000007", outcome="reached"),
    # cb7: cancelled: created counts, the SLA share does not see it.
    callback(
        "callback_created",
        "cb7",
        "2026-11-17T08:45:00Z",
        "0400000008",
        sla_deadline="2026-11-17T10:45:00+00:00",
    ),
    callback("callback_cancelled", "cb7", "2026-11-17T09:00:00Z", "0400000008"),
    # cb8: created Tuesday, completed Wednesday (outside).
    callback("callback_created", "cb8", "2026-11-17T20:00:00Z", "0400000009"),
    callback("callback_completed", "cb8", "2026-11-18T01:00:00Z", "0400000009", outcome="reached"),
]


@pytest.fixture
async def seeded(client: AsyncClient, writer: dict[str, str]) -> AsyncClient:
    response = await client.post("/v1/events:batch", json={"events": DATASET}, headers=writer)
    assert response.status_code == 200, response.text
    return client


async def _stats(client: AsyncClient, headers: dict[str, str], **params: str) -> Any:
    response = await client.get("/v1/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_daily_figures_match_the_hand_count(
    seeded: AsyncClient, reader: dict[str, str]
) -> None:
    body = await _stats(
        seeded,
        reader,
        **{"from": "2026-11-16T00:00:00+02:00", "to": "2026-11-18T00:00:00+02:00"},
        bucket="day",
    )
    assert body["from"] == "2026-11-15T22:00:00Z"
    assert body["to"] == "2026-11-17T22:00:00Z"
    assert body["timezone"] == "Europe/Helsinki"
    assert body["contacts"] == {"email": 1, "phone": 4, "web": 1}
    assert body["missed_calls"] == 3
    assert body["callbacks"] == {"created": 8, "completed": 4, "failed": 1, "expired": 1}
    monday, tuesday = body["buckets"]
    assert monday == {
        "start": "2026-11-15T22:00:00Z",
        "end": "2026-11-16T22:00:00Z",
        "local_start": "2026-11-16T00:00:00+02:00",
        "contacts": {"phone": 3, "web": 1},
        "missed_calls": 2,
        "callbacks": {"created": 3, "completed": 3, "failed": 0, "expired": 0},
    }
    assert tuesday["local_start"] == "2026-11-17T00:00:00+02:00"
    assert tuesday["contacts"] == {"phone": 1, "email": 1}
    assert tuesday["missed_calls"] == 1
    assert tuesday["callbacks"] == {"created": 5, "completed": 1, "failed": 1, "expired": 1}

    # Reached: cb1 1800 s, cb2 10800 s, cb3 7200 s, cb6 1800 s -> [1800, 1800, 7200, 10800].
    # Median: rank 1.5 -> 1800 + 0.5 * 5400 = 4500. p90: rank 2.7 -> 7200 + 0.7 * 3600 = 9720.
    assert body["time_to_reach"] == {"count": 4, "median_seconds": 4500.0, "p90_seconds": 9720.0}
    # Closed with a known deadline: cb1, cb2, cb3, cb4, cb5; within it: cb1 and cb3.
    assert body["sla"] == {"closed": 5, "reached_within": 2, "share": 0.4}
    # Unfiltered, and no completion here says `same_agent`.
    assert (body["queue"], body["agent_id"], body["same_agent_reaches"]) == (None, None, 0)

    demand = body["demand"]
    assert len(demand) == 7
    assert all(len(row) == 24 for row in demand)
    expected = {(0, 0): 1, (0, 9): 1, (0, 10): 2, (1, 9): 1, (1, 23): 1}
    for weekday in range(7):
        for hour in range(24):
            assert demand[weekday][hour] == expected.get((weekday, hour), 0), (weekday, hour)


async def test_hourly_buckets(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(
        seeded,
        reader,
        **{"from": "2026-11-16T07:00:00Z", "to": "2026-11-16T09:00:00Z"},
        bucket="hour",
    )
    assert [(b["local_start"], b["contacts"], b["missed_calls"]) for b in body["buckets"]] == [
        ("2026-11-16T09:00:00+02:00", {"phone": 1}, 1),
        ("2026-11-16T10:00:00+02:00", {"phone": 1, "web": 1}, 0),
    ]
    # cb1 was completed at 08:00Z, inside; cb2 at 11:10Z, outside.
    assert body["time_to_reach"]["count"] == 1
    assert body["callbacks"]["completed"] == 1


async def test_empty_range_has_empty_buckets(client: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(
        client, reader, **{"from": "2026-11-01T00:00:00+02:00", "to": "2026-11-04T00:00:00+02:00"}
    )
    assert body["bucket"] == "day"
    assert len(body["buckets"]) == 3
    assert body["time_to_reach"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert body["sla"] == {"closed": 0, "reached_within": 0, "share": None}


@pytest.mark.parametrize(
    "params",
    [
        # A bound left out is today's (test_stats_defaults.py): before today, or years back.
        {"to": "2000-01-01T00:00:00Z"},
        {"from": "2000-01-01T00:00:00Z"},
        {"from": "2026-11-02T00:00:00", "to": "2026-11-03T00:00:00Z"},
        {"from": "2026-11-03T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        {"from": "2026-11-02T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        {"from": "2025-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z"},
        {"from": "2026-10-01T00:00:00Z", "to": "2026-11-03T00:00:00Z", "bucket": "hour"},
        {"from": "2026-11-01T00:00:00Z", "to": "2026-11-03T00:00:00Z", "bucket": "week"},
    ],
)
async def test_bad_ranges_are_422(
    client: AsyncClient, reader: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get("/v1/stats", params=params, headers=reader)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_stats_need_the_read_scope(client: AsyncClient, writer: dict[str, str]) -> None:
    params = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
    assert (await client.get("/v1/stats", params=params)).status_code == 401
    assert (await client.get("/v1/stats", params=params, headers=writer)).status_code == 403


def test_days_follow_the_site_zone_across_daylight_saving() -> None:
    # Summer time ends on 25 October 2026 at 04.00 local: that day lasts 25 hours.
    start = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 25 Oct 00.00 +03:00
    end = datetime(2026, 10, 26, 22, 0, tzinfo=UTC)  # 27 Oct 00.00 +02:00
    assert bucket_starts(start, end, "day", HELSINKI) == [
        datetime(2026, 10, 24, 21, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 22, 0, tzinfo=UTC),
    ]
    hours = bucket_starts(start, datetime(2026, 10, 25, 22, 0, tzinfo=UTC), "hour", HELSINKI)
    assert len(hours) == 25


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([10.0, 0.0, 20.0], 0.9) == pytest.approx(18.0)
