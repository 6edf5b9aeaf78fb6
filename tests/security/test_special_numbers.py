"""Premium-rate and other special numbers get no callback and no SMS; the contact is recorded.

The review's attack: a missed call "from" +358 600... (premium rate: the SMS bills whoever
sends it) got a callback and a confirmation SMS, and +882... (an international network) got a
callback for an agent to dial. Every process runs for real here.
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
PREMIUM = "+358600123456"
INTERNATIONAL_NETWORK = "+882161234567"
CUSTOMER = "+358401110077"


@pytest.fixture
def stack(
    base_env: dict[str, str], clean_db: None, gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> Iterator[Stack]:
    extra = {"RINGBACK_WEBHOOK_SECRETS": SECRET, **delivering_to(gateway, inbox, tmp_path / "s")}
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


@pytest.mark.timeout(90)
async def test_special_numbers_get_no_callback_and_no_sms_and_are_recorded(
    stack: Stack, gateway: SmsGateway, make_key: Callable[..., Awaitable[str]]
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        for number in (PREMIUM, INTERNATIONAL_NETWORK, CUSTOMER):
            body = body_of(call_event(**{"from": number}))
            answer = await http.post(
                f"{stack.url('intake')}/v1/webhooks/generic",
                content=body,
                headers=signed_headers(SECRET, body),
            )
            assert answer.status_code == 202, answer.text  # stored, whoever it is from

        # The real customer, sent last, gets their SMS: everything before it was handled.
        await asyncio.to_thread(gateway.wait_for, 1)
        await asyncio.sleep(2.0)  # time for any SMS that should not come
        assert [r.json()["to"] for r in gateway.requests] == [CUSTOMER]

        listed = await http.get(f"{stack.url('callback')}/v1/callbacks", headers=admin)
        assert [c["phone"] for c in listed.json()["items"]] == [CUSTOMER]

        for number in (PREMIUM, INTERNATIONAL_NETWORK):

            async def timeline(number: str = number) -> list[str] | None:
                found = await http.get(
                    f"{stack.url('history')}/v1/customers", params={"phone": number}, headers=admin
                )
                items = found.json()["items"] if found.status_code == 200 else []
                if not items:
                    return None
                events = await http.get(
                    f"{stack.url('history')}/v1/customers/{items[0]['id']}/timeline",
                    headers=admin,
                )
                types = [e["type"] for e in events.json()["items"]]
                return types if "x-callback_declined_number_type" in types else None

            types = await _eventually(timeline)
            assert "missed_call" in types  # the contact itself is on the timeline
