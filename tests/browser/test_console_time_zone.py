"""The console shows times in the site's zone, and says which, whatever the laptop is set to."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import snapshot
from tests.support.stack import Stack

SITE_ZONE = "Europe/Helsinki"  # the stack's RINGBACK_SITE_TIMEZONE (the default)


@pytest.fixture
async def utc_page(browser: Browser) -> AsyncIterator[Page]:
    """An agent in Helsinki whose laptop is set to UTC."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC"
    )
    context.set_default_timeout(15_000)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_times_are_the_sites_not_the_browsers_and_the_zone_is_named(
    stack: Stack, utc_page: Page, make_key: Callable[..., Awaitable[str]]
) -> None:
    page = utc_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    key = await make_key("callbacks:read", "callbacks:write", "history:read", name="console")

    await page.goto(f"{stack.url('history')}/console/")
    await expect(page.get_by_test_id("time-zone")).to_have_text(f"Times in {SITE_ZONE}")
    await page.get_by_label("API key").fill(key)
    await page.get_by_label("Agent id").fill("aino")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("status")).to_have_text("Signed in as aino.")

    # "Updated 18:31" in Helsinki, where the laptop's clock would say 16:31.
    shown = page.get_by_test_id("queue-updated").locator("time")
    await expect(shown).to_have_text(re.compile(r"^\d\d:\d\d$"))
    instant = datetime.fromisoformat(str(await shown.get_attribute("datetime")))
    helsinki = instant.astimezone(ZoneInfo(SITE_ZONE)).strftime("%H:%M")
    assert await shown.text_content() == helsinki
    # Hovering gives the whole date and time, in the same zone.
    assert helsinki in str(await shown.get_attribute("title"))
    await snapshot(page, "time-zone-utc-laptop")

    # "Today" starts at the site's midnight, also on the day summer time begins (03:00 became
    # 04:00 on 29 March 2026): at 23:30 that evening in Helsinki, the day began at 22:00 UTC
    # the evening before.
    start = await page.evaluate(
        "import('./dom.js').then((dom) =>"
        " dom.startOfToday(new Date('2026-03-29T20:30:00Z')).toISOString())"
    )
    assert start == "2026-03-28T22:00:00.000Z"
    assert errors == []
