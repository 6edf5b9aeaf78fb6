"""The console and the roster (DESIGN §9): a key that names its agent, presence, queues."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, Route, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.apikeys import create_key
from tests.browser.conftest import snapshot
from tests.support.stack import Stack

AGENT_SCOPES = ["callbacks:read", "callbacks:write", "history:read"]


@pytest.fixture
async def admin(
    stack: Stack, make_key: Callable[..., Awaitable[str]]
) -> AsyncIterator[httpx.AsyncClient]:
    """Callback's API as an admin sets it up: queues, the roster, callbacks."""
    key = await make_key("admin", name="admin")
    async with httpx.AsyncClient(
        base_url=stack.url("callback"), headers={"authorization": f"Bearer {key}"}
    ) as client:
        yield client


async def agent_key(
    sessions: async_sessionmaker[AsyncSession], agent_id: str, scopes: list[str] = AGENT_SCOPES
) -> str:
    """A desk key bound to `agent_id`, as `ringback api-key create --agent` makes one."""
    async with sessions() as session:
        _, key = await create_key(
            session, name=f"{agent_id}'s desk", scopes=scopes, agent_id=agent_id
        )
        await session.commit()
    return key


async def put(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.put(path, json=body)
    assert answer.status_code in (200, 201), answer.text
    found: dict[str, Any] = answer.json()
    return found


async def presence(client: httpx.AsyncClient, agent_id: str) -> str:
    answer = await client.get(f"/v1/agents/{agent_id}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["presence"]
    return status


async def new_callback(client: httpx.AsyncClient, **fields: Any) -> str:
    """A missed call taken straight into callback, in whatever queue `fields` name."""
    body = {
        "request_id": f"missed:{secrets.token_hex(8)}",
        "source": "missed_call",
        "first_contact_at": datetime.now(UTC).isoformat(),
        **fields,
    }
    answer = await client.post("/v1/callbacks", json=body)
    assert answer.status_code == 201, answer.text
    callback_id: str = answer.json()["id"]
    return callback_id


async def sign_in(page: Page, stack: Stack, key: str, agent_id: str = "") -> None:
    await page.goto(f"{stack.url('history')}/console/")
    await page.get_by_label("API key").fill(key)
    await page.get_by_label("Agent id").fill(agent_id)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_key_bound_to_anna_signs_her_in_available_and_out_offline(
    stack: Stack,
    page: Page,
    admin: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
) -> None:
    await put(admin, "/v1/queues/billing", {"name": "Billing"})
    await put(admin, "/v1/agents/anna", {"name": "Anna", "queues": ["billing"]})
    assert await presence(admin, "anna") == "offline"
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    status = page.get_by_test_id("status")

    # A key that is nobody's in particular still needs the agent to say who they are.
    await sign_in(page, stack, await make_key(*AGENT_SCOPES, name="shared desk"))
    await expect(status).to_have_text(re.compile(r"enter your agent id"))
    await expect(page.get_by_label("Agent id")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("sign-in")).to_be_visible()

    # Anna's own key names her: the agent id stays empty.
    key = await agent_key(sessions, "anna")
    await sign_in(page, stack, key)
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")
    await expect(status).to_have_text("Signed in as anna. You are available.")
    await expect(page.get_by_label("Presence")).to_have_value("available")
    assert await presence(admin, "anna") == "available"
    await expect(page.get_by_test_id("my-queues").get_by_test_id("queue-summary")).to_have_text(
        [re.compile(r"^Billing")]
    )
    await snapshot(page, "queues-1-anna-signed-in")

    # On a break she cannot claim, and the page says why and how to get back.
    await page.get_by_label("Presence").select_option("break")
    await expect(status).to_have_text("You are on a break.")
    assert await presence(admin, "anna") == "break"
    await page.get_by_role("button", name="Claim next").click()
    await expect(status).to_have_text(
        "You are on a break: set your presence to Available to claim."
    )
    await expect(page.get_by_label("Presence")).to_be_focused()

    # Reloading the tab is not signing in again: the break stays a break.
    await page.reload()
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")
    await expect(page.get_by_label("Presence")).to_have_value("break")
    assert await presence(admin, "anna") == "break"

    await page.get_by_role("button", name="Sign out").click()
    await expect(status).to_have_text("Signed out. The key is no longer kept in this tab.")
    assert await presence(admin, "anna") == "offline"

    # Her key, someone else's name typed in: the key decides, and the page says so.
    await sign_in(page, stack, key, agent_id="ben")
    await expect(status).to_have_text(
        "This key belongs to agent anna, not ben: signed in as anna. You are available."
    )
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")
    assert await presence(admin, "anna") == "available"
    assert errors == []


async def test_a_key_sent_before_the_pages_configuration_arrived_still_signs_in(
    stack: Stack,
    page: Page,
    admin: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An agent who pastes their key and presses Enter while the page is still asking for
    its configuration (the callback service's address) is signed in once it arrives."""
    await put(admin, "/v1/queues/billing", {"name": "Billing"})
    await put(admin, "/v1/agents/anna", {"name": "Anna", "queues": ["billing"]})
    arrived = asyncio.Event()

    async def late(route: Route) -> None:
        await arrived.wait()
        await route.continue_()

    await page.route("**/console/config.json", late)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await sign_in(page, stack, await agent_key(sessions, "anna"))
    await expect(page.get_by_test_id("whoami")).not_to_be_visible()
    arrived.set()
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")
    await expect(page.get_by_test_id("status")).not_to_contain_text("failed")
    assert errors == []


async def test_presence_is_best_effort_signing_in_and_out(
    stack: Stack,
    page: Page,
    admin: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await put(admin, "/v1/agents/anna", {"name": "Anna", "queues": ["default"]})
    # A key that may read but not act: the roster refuses its presence changes.
    key = await agent_key(sessions, "anna", ["callbacks:read", "history:read"])
    status = page.get_by_test_id("status")

    await sign_in(page, stack, key)
    await expect(status).to_have_text(
        re.compile(r"^Signed in as anna\. Setting you available failed: Forbidden")
    )
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")
    await expect(page.get_by_label("Presence")).to_have_value("offline")

    await page.get_by_role("button", name="Sign out").click()
    await expect(status).to_have_text(
        re.compile(r"^Signed out\. .* Setting you offline failed: Forbidden")
    )
    await expect(page.get_by_test_id("sign-in")).to_be_visible()
    assert await presence(admin, "anna") == "offline"


async def test_anna_sees_her_queues_filters_them_and_claims_from_them(
    stack: Stack,
    page: Page,
    admin: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await put(admin, "/v1/queues/billing", {"name": "Billing"})
    await put(admin, "/v1/queues/sales", {"name": "Sales", "sla_minutes": 30})
    await put(admin, "/v1/queues/support", {"name": "Support"})
    await put(admin, "/v1/agents/anna", {"name": "Anna", "queues": ["billing", "sales"]})
    billing = await new_callback(
        admin, phone="040 111 0001", name="Maija", language="sv", queue="billing", priority=5
    )
    # Past its queue's SLA already, and with no language given: the site's default is a guess.
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    sales = await new_callback(
        admin, phone="040 111 0002", name="Matti", queue="sales", first_contact_at=an_hour_ago
    )
    # The most urgent of all, but in a queue that does not serve Anna.
    support = await new_callback(
        admin, phone="040 111 0003", name="Sami", language="fi", queue="support", priority=10
    )
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.set_viewport_size({"width": 1280, "height": 900})
    await sign_in(page, stack, await agent_key(sessions, "anna"))
    await expect(page.get_by_test_id("whoami")).to_have_text("Signed in as anna")

    summaries = page.get_by_test_id("my-queues").get_by_test_id("queue-summary")
    await expect(summaries).to_have_count(2)
    billing_summary = summaries.and_(page.locator("[data-queue=billing]"))
    sales_summary = summaries.and_(page.locator("[data-queue=sales]"))
    await expect(billing_summary).to_contain_text("Billing")
    await expect(billing_summary.get_by_test_id("queue-summary-waiting")).to_have_text("1 waiting")
    await expect(billing_summary.get_by_test_id("queue-summary-overdue")).to_have_text("0 overdue")
    await expect(sales_summary).to_contain_text("Sales")
    await expect(sales_summary.get_by_test_id("queue-summary-waiting")).to_have_text("1 waiting")
    await expect(sales_summary.get_by_test_id("queue-summary-overdue")).to_have_text("1 overdue")

    # All her queues: both of hers, Support's callback nowhere.
    items = page.get_by_test_id("queue").get_by_test_id("queue-item")
    await expect(items).to_have_count(2)
    await expect(page.locator(f"[data-callback-id='{support}']")).to_have_count(0)
    await expect(page.get_by_test_id("figure-waiting")).to_have_text("2")
    billing_card = page.get_by_test_id("queue-due").locator(f"[data-callback-id='{billing}']")
    await expect(billing_card.get_by_test_id("queue-item-queue")).to_have_text("Queue: Billing")
    await expect(billing_card.get_by_test_id("queue-item-language")).to_have_text("Swedish")
    sales_card = page.get_by_test_id("queue-overdue").locator(f"[data-callback-id='{sales}']")
    await expect(sales_card.get_by_test_id("queue-item-queue")).to_have_text("Queue: Sales")
    await expect(sales_card.get_by_test_id("queue-item-language")).to_have_text(
        "language not known"
    )
    await snapshot(page, "queues-2-all-my-queues")

    await page.get_by_label("Show callbacks from").select_option("sales")
    await expect(items).to_have_count(1)
    await expect(items).to_have_attribute("data-callback-id", sales)
    await expect(sales_summary).to_have_attribute("aria-current", "true")
    await page.get_by_label("Show callbacks from").select_option("billing")
    await expect(items).to_have_count(1)
    await expect(items).to_have_attribute("data-callback-id", billing)
    await snapshot(page, "queues-3-billing-only")

    # Support's callback ranks first overall; Anna is handed the first of hers.
    await page.get_by_role("button", name="Claim next").click()
    await expect(page.get_by_test_id("status")).to_have_text(re.compile(r"^Claimed: call Maija"))
    await expect(page.get_by_test_id("callback-queue")).to_have_text("Billing")
    await expect(page.get_by_test_id("callback-language")).to_have_text("Swedish")
    mine = page.get_by_test_id("my-callbacks").get_by_test_id("my-callback")
    await expect(mine).to_have_attribute("data-callback-id", billing)
    await snapshot(page, "queues-4-claimed")

    claimed = (await admin.get(f"/v1/callbacks/{billing}")).json()
    assert (claimed["status"], claimed["agent_id"], claimed["queue"]) == (
        "in_progress",
        "anna",
        "billing",
    )
    untouched = (await admin.get(f"/v1/callbacks/{support}")).json()
    assert (untouched["status"], untouched["agent_id"]) == ("pending", None)
    assert errors == []
