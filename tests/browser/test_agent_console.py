"""An agent works a callback in the console, in a real browser, against every real process."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx
from playwright.async_api import Page, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.browser.conftest import snapshot
from tests.browser.test_customer_page import missed_call_link
from tests.support.gateways import SmsGateway
from tests.support.stack import Stack

AGENT = "agent-aino"


async def test_an_agent_claims_tries_sees_the_retry_and_later_reaches_the_customer(
    stack: Stack,
    gateway: SmsGateway,
    page: Page,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    await missed_call_link(stack, gateway, "040 765 4321")
    key = await make_key("callbacks:read", "callbacks:write", "history:read", name="console")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto(f"{stack.url('history')}/console/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_label("Agent id").fill(AGENT)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("status")).to_have_text(f"Signed in as {AGENT}.")

    # The missed call waits in the queue, due now.
    due = page.get_by_test_id("queue-due").get_by_test_id("queue-item")
    await expect(due).to_have_count(1)
    callback_id = await due.get_attribute("data-callback-id")
    assert callback_id
    await snapshot(page, "agent-1-queue")

    await page.get_by_role("button", name="Claim next").click()
    await expect(page.get_by_test_id("status")).to_have_text(re.compile(r"^Claimed: call "))
    await expect(page.get_by_test_id("live-state")).to_have_text("Live updates: on")
    timeline = page.get_by_test_id("timeline").get_by_test_id("timeline-event")
    await expect(timeline.and_(page.locator("[data-type=missed_call]"))).to_have_count(1)
    await snapshot(page, "agent-2-claimed")

    # Nobody answers: the retry is booked, and the attempt arrives on the timeline live.
    await page.get_by_label("Outcome").select_option("no_answer")
    await page.get_by_label("Note (optional)").fill("rang 10 times")
    await page.get_by_role("button", name="Record outcome").click()
    await expect(page.get_by_test_id("status")).to_have_text(re.compile(r"^Recorded: .*Next try "))
    await expect(timeline.and_(page.locator("[data-type=callback_attempted]"))).to_have_count(1)
    later = page.get_by_test_id("queue-later").locator(f"[data-callback-id='{callback_id}']")
    await page.get_by_role("button", name="Refresh queue").click()
    await expect(later).to_have_count(1)
    await snapshot(page, "agent-3-retry-scheduled")

    # Nothing else is due until the retry time comes.
    await page.get_by_role("button", name="Claim next").click()
    await expect(page.get_by_test_id("status")).to_have_text(re.compile(r"^Nothing is due"))

    # The retry waits 15 minutes by policy; rather than wait, the test moves it to now.
    async with sessions() as session:
        await session.execute(
            text("UPDATE callback.callbacks SET due_at = now() WHERE id = :id"),
            {"id": callback_id},
        )
        await session.commit()

    await page.get_by_role("button", name="Refresh queue").click()
    await expect(due).to_have_count(1)
    await page.get_by_role("button", name="Claim next").click()
    await expect(page.get_by_test_id("status")).to_have_text(re.compile(r"^Claimed: call "))
    await page.get_by_label("Outcome").select_option("reached")
    await page.get_by_role("button", name="Record outcome").click()
    await expect(page.get_by_test_id("status")).to_have_text(
        re.compile(r"The callback is completed\.$")
    )
    await expect(timeline.and_(page.locator("[data-type=callback_completed]"))).to_have_count(1)
    await snapshot(page, "agent-4-reached")

    async with httpx.AsyncClient(
        base_url=stack.url("callback"), headers={"authorization": f"Bearer {key}"}
    ) as callback:
        done = (await callback.get(f"/v1/callbacks/{callback_id}")).json()
    assert done["status"] == "completed"
    assert [(a["outcome"], a["agent_id"]) for a in done["attempts"]] == [
        ("no_answer", AGENT),
        ("reached", AGENT),
    ]
    assert errors == []
