"""One missed call the whole way, every service a real process on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        **delivering_to(gateway, inbox, tmp_path / "sink"),
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def wait_until(check: Callable[[], Awaitable[object]], seconds: float = 30.0) -> object:
    """Poll `check` until it returns something truthy, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


async def test_a_missed_call_reaches_the_customer_and_the_timeline(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    # The telephony system sends the number in a national notation, and what its CRM lookup
    # knows about the caller.
    known = {"email": "maija@example.fi", "name": "Maija Meikäläinen", "language": "fi"}
    event = call_event(
        call_id="e2e-call-1", metadata={"customer": known}, **{"from": "040 765 4321"}
    )
    body = body_of(event)
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(SECRET, body),
        )
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"

    [sms] = await asyncio.to_thread(gateway.wait_for, 1)
    sent = sms.json()
    assert sent["to"] == "+358407654321"
    assert sms.headers["idempotency-key"] == sent["reference"]
    assert "/v1/self/" in sent["text"]

    key = await make_key("history:read")
    history = httpx.AsyncClient(
        base_url=stack.url("history"), headers={"authorization": f"Bearer {key}"}
    )

    async def timeline() -> list[dict[str, object]] | None:
        found = await history.get("/v1/customers", params={"phone": "0407654321"})
        if found.status_code != 200 or not found.json()["items"]:
            return None
        customer = found.json()["items"][0]["id"]
        page = (await history.get(f"/v1/customers/{customer}/timeline")).json()
        items: list[dict[str, object]] = page["items"]
        kinds = sorted(str(item["type"]) for item in items)
        expected = ["callback_created", "missed_call", "notification_sent", "notification_sent"]
        return items if kinds == expected else None

    [email] = await asyncio.to_thread(inbox.wait_for, 1)
    assert email["To"] == "maija@example.fi"
    assert email["From"] == "asiakaspalvelu@example.fi"
    text = email.get_content()
    assert "Maija" in text
    assert "/v1/self/" in text

    async with history:
        events = await wait_until(timeline)
    assert isinstance(events, list)
    channels = sorted(str(e["channel"]) for e in events if e["type"] == "notification_sent")
    assert channels == ["email", "sms"]
    # Nothing more arrives later: exactly one SMS and one email for one missed call.
    await asyncio.sleep(1.0)
    assert len(gateway.requests) == 1
    assert len(inbox.messages) == 1
