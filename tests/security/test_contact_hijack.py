"""A stranger's email cannot take over someone else's callback.

The review's attack: a missed call from +358401110003 made a callback with no email; a
contact request from the attacker with that number and `attacker@evil.example` merged into
it and filled the email in; after the confirmation cooldown the attacker got the victim's
self-service link by email and cancelled the victim's callback. The attacker's name and
message showed to agents as the customer's. Every process runs for real here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()
VICTIM = "+358401110003"
ATTACKER = "attacker@evil.example"


@pytest.fixture
def stack(
    base_env: dict[str, str], clean_db: None, gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> Iterator[Stack]:
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        # No cooldown: the merged contact is confirmed at once, as it was after the wait.
        "RINGBACK_CONFIRMATION_COOLDOWN_MINUTES": "0",
        **delivering_to(gateway, inbox, tmp_path / "s"),
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def _eventually(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError("condition not met in time")


@pytest.mark.timeout(120)
async def test_a_later_contacts_email_gets_no_link_and_shows_as_unverified(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        body = body_of(call_event(**{"from": VICTIM}))
        call = await http.post(
            f"{stack.url('intake')}/v1/webhooks/generic",
            content=body,
            headers=signed_headers(SECRET, body),
        )
        assert call.status_code == 202, call.text
        await asyncio.to_thread(gateway.wait_for, 1)  # the victim's confirmation

        hijack = await http.post(
            f"{stack.url('intake')}/v1/contact-requests",
            json={
                "channel": "web",
                "phone": VICTIM,
                "email": ATTACKER,
                "name": "Mallory Attacker",
                "message": "Please cancel my callback",
            },
            headers=admin,
        )
        assert hijack.status_code == 202, hijack.text

        async def merged() -> dict[str, Any] | None:
            listed = await http.get(f"{stack.url('callback')}/v1/callbacks", headers=admin)
            items = listed.json()["items"]
            return items[0] if items and items[0]["contact_count"] == 2 else None

        callback = await _eventually(merged)
        # The merge is confirmed to the number the callback came from, and only there.
        await asyncio.to_thread(gateway.wait_for, 2)
        await asyncio.sleep(2.0)  # time for an email that should not come

    assert inbox.messages == []
    assert [r.json()["to"] for r in gateway.requests] == [VICTIM, VICTIM]
    # Agents see what the later contact said, marked, not as the customer's own details.
    assert callback["email"] is None
    assert callback["name"] != "Mallory Attacker"
    assert callback["message"] != "Please cancel my callback"
    unverified = callback["unverified"]
    assert unverified["label"] == "given on a later contact, unverified"
    assert (unverified["email"], unverified["name"], unverified["message"]) == (
        ATTACKER,
        "Mallory Attacker",
        "Please cancel my callback",
    )
    assert callback["status"] in ("pending", "scheduled")
