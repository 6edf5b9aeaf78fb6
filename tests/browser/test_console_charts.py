"""The console's Today charts (issue #19): a hand-made day drawn as bars against the plan's
capacity and the SLA share per hour as a line, in a real browser against every real process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import snapshot
from tests.browser.test_console_queues import admin, sign_in
from tests.support.stack import Stack

__all__ = ["admin"]

SITE = ZoneInfo("Europe/Helsinki")  # the stack's site zone, and the browser's
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _today_at(hour: int, minute: int) -> datetime:
    today = datetime.now(SITE).date()
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=SITE)


def _event(type_: str, cb: str, at: datetime, **data: Any) -> dict[str, Any]:
    """A lifecycle event of callback `cb` in the default queue, as callback records it."""
    return {
        "id": f"{cb}-{type_}",
        "occurred_at": at.astimezone(UTC).isoformat(),
        "channel": "phone",
        "direction": "internal",
        "type": type_,
        "customer": {"phone": f"+35840100{sum(map(ord, cb)) % 10000:04d}"},
        "subject": {"kind": "callback", "id": cb},
        "actor": {"kind": "system"},
        "summary": type_,
        "data": {"queue": "default", **data},
    }


def _callback(
    cb: str, hour: int, minute: int, *, closed: tuple[str, int] | None = None
) -> list[Any]:
    """Created at `hour:minute`; closed `closed[1]` minutes later as `closed[0]`."""
    created = _today_at(hour, minute)
    deadline = (created + timedelta(minutes=60)).isoformat()
    events = [
        _event(
            "callback_created",
            cb,
            created,
            first_contact_at=created.isoformat(),
            sla_deadline=deadline,
        )
    ]
    if closed is not None:
        type_, after = closed
        outcome = "reached" if type_ == "callback_completed" else "attempts_exhausted"
        events.append(
            _event(
                type_,
                cb,
                created + timedelta(minutes=after),
                outcome=outcome,
                sla_deadline=deadline,
            )
        )
    return events


# The day by the site's hours. New: 2 at 9, 1 at 10, 4 at 13 (more than its 3 seats).
# Closed: at 9 one within its hour; at 10 one failed (past its deadline); at 13 one within.
DAY = [
    *_callback("a1", 9, 5, closed=("callback_completed", 30)),
    *_callback("a2", 9, 10),
    *_callback("b1", 10, 0, closed=("callback_failed", 50)),
    *_callback("c1", 13, 0, closed=("callback_completed", 20)),
    *_callback("c2", 13, 5),
    *_callback("c3", 13, 10),
    *_callback("c4", 13, 15),
]


async def test_today_shows_demand_against_capacity_and_the_sla_share_per_hour(
    page: Page,
    stack: Stack,
    admin: httpx.AsyncClient,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    # Three agents with a callback each per hour, 08-16 every day: 3 seats in 8 hours.
    plan = {
        "timezone": "Europe/Helsinki",
        "slot_minutes": 60,
        "callbacks_per_agent_per_slot": 1,
        "business_hours": {day: [{"start": "08:00", "end": "16:00"}] for day in DAYS},
        "default_agents": 3,
    }
    answer = await admin.put("/v1/capacity", json=plan)
    assert answer.status_code == 200, answer.text
    internal = await make_key("internal", name="events")
    async with httpx.AsyncClient(
        base_url=stack.url("history"), headers={"authorization": f"Bearer {internal}"}
    ) as history:
        stored = await history.post("/v1/events:batch", json={"events": DAY})
    assert stored.status_code == 200, stored.text

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.set_viewport_size({"width": 1280, "height": 900})
    key = await make_key("callbacks:read", "callbacks:write", "history:read", name="console")
    await sign_in(page, stack, key, "agent-aino")
    await expect(page.get_by_test_id("status")).to_have_text("Signed in as agent-aino.")

    demand = page.get_by_test_id("chart-demand")
    bars = demand.get_by_test_id("demand-bar")
    midnight = _today_at(0, 0)
    tomorrow = midnight.date() + timedelta(days=1)
    next_midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=SITE)
    hours = round((next_midnight - midnight).total_seconds() / 3600)
    await expect(bars).to_have_count(hours)
    shown = await bars.evaluate_all("bars => bars.map(b => Number(b.dataset.demand))")
    first = midnight.astimezone(UTC)
    expected = [0] * hours
    for event in DAY:
        if event["type"] == "callback_created":
            at = datetime.fromisoformat(event["occurred_at"])
            expected[int((at - first).total_seconds() // 3600)] += 1
    assert shown == expected
    assert sum(shown) == 7
    # Capacity in the plan's eight hours, and the hour with more new callbacks than seats.
    marks = demand.get_by_test_id("capacity-mark")
    await expect(marks).to_have_count(8)
    assert set(await marks.evaluate_all("m => m.map(x => x.dataset.capacity)")) == {"3"}
    over = demand.locator("rect.over")
    await expect(over).to_have_count(1)
    await expect(demand).to_have_attribute(
        "aria-label",
        "New callbacks per hour today: 7 in all, against 24 seats; more than capacity in 1 hour.",
    )

    # Three hours closed callbacks: the line goes through each.
    sla = page.get_by_test_id("chart-sla")
    await expect(sla.get_by_test_id("sla-line")).to_have_attribute("data-points", "3")
    await expect(sla.get_by_test_id("sla-point")).to_have_count(3)
    label = await sla.get_attribute("aria-label")
    assert label is not None
    assert label.endswith(": 09:00 100 %, 10:00 0 %, 13:00 100 %."), label
    await snapshot(page, "console-today-charts")
    assert errors == []
