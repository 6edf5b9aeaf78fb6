"""The wallboard page (DESIGN §13): signed in once, it shows a new callback by itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import snapshot
from tests.browser.test_console_queues import admin, new_callback
from tests.support.stack import Stack

__all__ = ["admin"]


async def test_the_wallboard_updates_live_when_a_callback_arrives(
    page: Page,
    stack: Stack,
    admin: httpx.AsyncClient,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    reader = await make_key("callbacks:read", name="wallboard")
    await page.goto(f"{stack.url('history')}/console/wallboard")
    await page.get_by_test_id("board-key").fill(reader)
    await page.get_by_test_id("board-start").click()
    await expect(page.get_by_test_id("board-state")).to_have_text("Live")
    await expect(page.get_by_test_id("board-sign-in")).to_be_hidden()
    await expect(page.get_by_test_id("waiting")).to_have_text("0")
    await expect(page.get_by_test_id("longest-wait")).to_have_text("\u2013")

    await new_callback(admin, phone="+358401234567")
    # Nothing is clicked or reloaded: the stream brings it within 5 s (§13).
    await expect(page.get_by_test_id("waiting")).to_have_text("1", timeout=5000)
    await expect(page.get_by_test_id("longest-wait")).to_have_text("0 min")
    await snapshot(page, "wallboard-live")
