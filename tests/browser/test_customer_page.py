"""The customer taps the link in their confirmation SMS and cancels, in a real browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import WEBHOOK_SECRET, snapshot
from tests.support.gateways import SmsGateway
from tests.support.signing import body_of, call_event, signed_headers
from tests.support.stack import Stack

LINK = re.compile(r"https?://\S+/v1/self/\S+")


async def missed_call_link(stack: Stack, gateway: SmsGateway, number: str) -> str:
    """Post a missed call as the telephony system would; the link from the SMS that follows."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    body = body_of(call_event(occurred_at=now, **{"from": number}))
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(WEBHOOK_SECRET, body),
        )
    assert answer.status_code == 202, answer.text
    [sms] = await asyncio.to_thread(gateway.wait_for, 1)
    found = LINK.search(sms.json()["text"])
    assert found, sms.json()["text"]
    return found.group(0)


async def test_a_customer_cancels_their_callback_from_the_link_in_the_sms(
    stack: Stack,
    gateway: SmsGateway,
    page: Page,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    link = await missed_call_link(stack, gateway, "040 765 4321")
    # The link points at intake, the one address the outside world knows.
    assert link.startswith(stack.url("intake"))

    await page.goto(link)
    # No language was known for this caller: the site's default, Finnish.
    await expect(page.locator("html")).to_have_attribute("lang", "fi")
    await snapshot(page, "customer-1-opened-fi")

    await page.get_by_role("link", name="In English").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your callback is in the queue")
    await expect(page.get_by_text(re.compile(r"^We will call you "))).to_be_visible()

    # Cancelling asks first, so a slip of the thumb (or a link preview) cancels nothing.
    await page.get_by_role("button", name="Cancel callback").click()
    await expect(
        page.get_by_role("heading", name="Do you want to cancel your callback?")
    ).to_be_visible()
    await snapshot(page, "customer-2-confirm")
    await page.get_by_role("button", name="Yes, cancel my callback").click()

    await expect(page.get_by_role("status")).to_have_text(
        "Your callback has been cancelled. We will not call you."
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your callback is cancelled")
    # Nothing is left to press: the callback can no longer be changed from here.
    await expect(page.get_by_role("button", name="Cancel callback")).to_have_count(0)
    await snapshot(page, "customer-3-cancelled")

    key = await make_key("callbacks:read")
    async with httpx.AsyncClient(
        base_url=stack.url("callback"), headers={"authorization": f"Bearer {key}"}
    ) as callback:
        listed = (await callback.get("/v1/callbacks", params={"phone": "+358407654321"})).json()
    assert [item["status"] for item in listed["items"]] == ["cancelled"]

    # The customer is told, once, that the call is off (the confirmation was the first SMS).
    sent = await asyncio.to_thread(gateway.wait_for, 2)
    assert len(sent) == 2


async def test_a_tampered_link_gets_a_friendly_page(
    stack: Stack, gateway: SmsGateway, page: Page
) -> None:
    link = await missed_call_link(stack, gateway, "040 765 4322")
    response = await page.goto(link[:-4] + "AAAA")
    assert response is not None
    assert response.status == 404
    # The browser asks for English (the context's locale); the page answers in it.
    await expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    # A customer sees a page, never a stack trace or a JSON problem document.
    content = await page.content()
    assert "Traceback" not in content
    assert '"status"' not in content
