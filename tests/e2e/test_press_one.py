"""A caller waiting in the Twilio queue presses 1 (§11), every service a real process: the test
plays Twilio, posting the signed wait request, the press and the queue's end as Twilio does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.dialing import wait_until
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack
from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN, play

pytestmark = pytest.mark.e2e

QUEUE_NUMBER = "+358942451000"
CALLER = "+358407654321"
EARLIER = "+358401111111"
CALL_SID = "CA" + "9" * 32
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@pytest.fixture
def stack(
    base_env: dict[str, str],
    clean_db: None,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    tmp_path: Path,
) -> Iterator[Stack]:
    extra = {
        **delivering_to(gateway, inbox, tmp_path / "sink"),
        "RINGBACK_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        # The offer's content is under test, not its speed: a loaded machine may take over the
        # production second for a fresh callback's first estimate.
        "RINGBACK_OFFER_TIMEOUT_SECONDS": "10",
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


def queue_form(**extra: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL_SID,
        "From": CALLER,
        "To": QUEUE_NUMBER,
        "Direction": "inbound",
        **extra,
    }


async def test_pressing_1_in_the_queue_books_a_callback_that_keeps_the_place(
    stack: Stack, gateway: SmsGateway, make_key: Callable[..., Awaitable[str]]
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    reader = {"authorization": f"Bearer {await make_key('callbacks:read', 'callbacks:write')}"}
    callback = httpx.AsyncClient(base_url=stack.url("callback"), headers=admin)
    intake = stack.url("intake")
    try:
        plan = {
            "timezone": "Europe/Helsinki",
            "business_hours": {day: [{"start": "00:00", "end": "24:00"}] for day in DAYS},
            "default_agents": 1,
        }
        queue = {
            "name": "Laskutus",
            "numbers": [QUEUE_NUMBER],
            "capacity": plan,
            "offer": {"min_wait_seconds": 30},
        }
        assert (await callback.put("/v1/queues/billing", json=queue)).status_code in (200, 201)
        # A missed call that came in a moment ago, after our caller entered the queue.
        earlier = await callback.post(
            "/v1/callbacks",
            json={
                "request_id": "earlier-missed-call",
                "source": "missed_call",
                "first_contact_at": datetime.now(UTC).isoformat(),
                "phone": EARLIER,
                "queue": "billing",
                "language": "fi",
                "consent": {"sms": False, "email": False},
            },
        )
        assert earlier.status_code == 201, earlier.text

        async with httpx.AsyncClient() as twilio_side:
            waited = await play(
                twilio_side,
                f"{intake}/v1/twiml/wait?queue=billing",
                queue_form(QueueTime="90", QueuePosition="2", CurrentQueueSize="2"),
            )
            assert waited.status_code == 200, waited.text
            gather = ET.fromstring(waited.content).find("Gather")
            assert gather is not None, waited.text
            say = gather.find("Say")
            assert say is not None
            assert say.get("language") == "fi-FI"
            action = gather.get("action", "")
            query = {k: v[0] for k, v in parse_qs(urlsplit(action).query).items()}

            pressed = await play(twilio_side, action, queue_form(Digits="1", QueueTime="95"))
            assert [child.tag for child in ET.fromstring(pressed.content)] == ["Say", "Leave"]
            # The caller leaves the queue, then hangs up: neither is a missed call.
            for result in ("leave", "hangup"):
                ended = await play(
                    twilio_side,
                    f"{intake}/v1/webhooks/twilio?queue=billing",
                    queue_form(QueueResult=result, QueueTime="97"),
                )
                assert ended.status_code == 200

        async def requested() -> list[dict[str, Any]]:
            found = await callback.get("/v1/callbacks?queue=billing", headers=reader)
            return [c for c in found.json()["items"] if c["phone"] == CALLER]

        [mine] = await wait_until(requested)
        assert mine["requested_in_queue"] is True
        assert datetime.fromisoformat(mine["rank_at"]) == datetime.fromisoformat(query["queued_at"])
        assert datetime.fromisoformat(mine["promised_by"]) == datetime.fromisoformat(
            query["estimate"]
        )
        # The confirmation SMS follows as for any callback.
        [sms] = await asyncio.to_thread(gateway.wait_for, 1)
        assert sms.json()["to"] == CALLER
        # ... and names the time the caller heard, not the SLA deadline.
        heard = datetime.fromisoformat(query["estimate"]).astimezone(ZoneInfo("Europe/Helsinki"))
        assert heard.strftime("%H.%M").lstrip("0") in sms.json()["text"], sms.json()["text"]

        # Ahead of the missed call that came after the caller entered the queue.
        view = await callback.get("/v1/queue?queue=billing", headers=reader)
        assert [c["phone"] for c in view.json()["due"]] == [CALLER, EARLIER]
        await asyncio.sleep(1.0)  # let a wrongly forwarded missed call land, if there were one
        again = await requested()
        assert [(c["id"], c["contact_count"]) for c in again] == [(mine["id"], 1)]
    finally:
        await callback.aclose()
