"""The console's Call button (§10) in Chromium: the agent presses Call, watches the call
progress live while the test plays Twilio, and confirms the outcome the line proposed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.browser.conftest import WEBHOOK_SECRET, snapshot
from tests.browser.test_console_queues import agent_key, put, sign_in
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack
from tests.support.twilio_calls import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwilioCalls,
    call_params,
    play,
    twilio_calls_api,
)

QUEUE_NUMBER = "+358942451000"
AGENT_PHONE = "+358401110000"


@pytest.fixture
def twilio() -> Iterator[TwilioCalls]:
    with twilio_calls_api() as api:
        yield api


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
    twilio: TwilioCalls,
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        **delivering_to(gateway, inbox, tmp_path / "sink"),
        "RINGBACK_DIALER": "twilio",
        "RINGBACK_DIALER_TWILIO_BASE_URL": twilio.url,
        "RINGBACK_DIALER_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "RINGBACK_DIALER_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "RINGBACK_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def test_anna_calls_the_customer_with_one_button_and_confirms_what_the_line_said(
    stack: Stack,
    page: Page,
    twilio: TwilioCalls,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    key = await make_key("admin", name="admin")
    async with httpx.AsyncClient(
        base_url=stack.url("callback"), headers={"authorization": f"Bearer {key}"}
    ) as admin:
        queue = {"name": "Billing", "numbers": [QUEUE_NUMBER], "caller_id": QUEUE_NUMBER}
        await put(admin, "/v1/queues/billing", queue)
        anna = {"name": "Anna", "queues": ["billing"], "languages": ["fi"], "phone": AGENT_PHONE}
        await put(admin, "/v1/agents/anna", anna)
        created = await admin.post(
            "/v1/callbacks",
            json={
                "request_id": "browser-dial-1",
                "source": "missed_call",
                "first_contact_at": datetime.now(UTC).isoformat(),
                "phone": "+358407654321",
                "name": "Maija Meikäläinen",
                "queue": "billing",
                "language": "fi",
            },
        )
        assert created.status_code == 201, created.text
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await sign_in(page, stack, await agent_key(sessions, "anna"))
    await page.get_by_test_id("claim-next").click()
    await expect(page.get_by_test_id("callback-name")).to_contain_text("Maija")
    call_button = page.get_by_test_id("call")
    await expect(call_button).to_be_visible()
    await call_button.click()
    progress = page.get_by_test_id("dial-progress")
    await expect(progress).to_be_visible()

    [call] = await asyncio.to_thread(twilio.wait_for, 1)
    status_url = call.one("StatusCallback")
    gather = call.twiml().find("Gather")
    assert gather is not None
    async with httpx.AsyncClient() as twilio_side:
        await play(twilio_side, status_url, call_params(call.sid, "ringing"))
        await expect(progress).to_contain_text("Ringing you")
        # A second press while the call runs is not offered.
        await expect(call_button).to_be_disabled()
        await snapshot(page, "dialing-ringing-agent")

        pressed = await play(
            twilio_side, gather.get("action", ""), call_params(call.sid, "in-progress", Digits="1")
        )
        dial = ET.fromstring(pressed.content).find("Dial")
        assert dial is not None
        number = dial.find("Number")
        assert number is not None
        await expect(progress).to_contain_text("Ringing the customer")

        child = "CA" + "d" * 32
        await play(
            twilio_side,
            number.get("statusCallback", ""),
            call_params(child, "in-progress", ParentCallSid=call.sid),
        )
        await expect(progress).to_contain_text("Connected")
        await snapshot(page, "dialing-connected")

        result = call_params(call.sid, "in-progress", DialCallStatus="completed")
        result |= {"DialCallSid": child, "DialCallDuration": "95"}
        await play(twilio_side, dial.get("action", ""), result)

    await expect(progress).to_contain_text("Call ended: the customer answered")
    # The proposed outcome is there without typing; one click confirms it.
    await expect(page.get_by_test_id("proposal")).to_contain_text("The line says: reached")
    await expect(page.get_by_test_id("outcome")).to_have_value("reached")
    confirm = page.get_by_test_id("record-outcome")
    await expect(confirm).to_have_text("Confirm outcome")
    await snapshot(page, "dialing-proposal")
    await confirm.click()
    await expect(page.get_by_test_id("status")).to_contain_text("The callback is completed")
    assert errors == []
    assert len(twilio.calls) == 1
