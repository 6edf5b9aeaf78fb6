"""The satisfaction survey end to end (§13), every service a real process: an agent reaches
the customer, the question goes from the survey number, and the customer's reply arrives
through Twilio Messaging's signed webhook at intake and ends on the timeline as a score."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.dialing import wait_until
from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack
from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN, play

pytestmark = pytest.mark.e2e

SURVEY_FROM = "+358401110000"
CUSTOMER = "+358407654321"


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
        "RINGBACK_SURVEY_FROM": SURVEY_FROM,
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def test_a_reply_by_sms_becomes_the_surveys_score_on_the_timeline(
    stack: Stack, gateway: SmsGateway, make_key: Callable[..., Awaitable[str]]
) -> None:
    admin = {"authorization": f"Bearer {await make_key('admin')}"}
    callback = httpx.AsyncClient(base_url=stack.url("callback"), headers=admin)
    history = httpx.AsyncClient(
        base_url=stack.url("history"),
        headers={"authorization": f"Bearer {await make_key('history:read')}"},
    )
    try:
        queue = {
            "name": "Tuki",
            "survey": {"enabled": True, "delay_minutes": 0},
            # None: the test must not depend on the hour it runs at.
            "sms_quiet_hours": {"start": "00:00", "end": "00:00"},
        }
        assert (await callback.put("/v1/queues/support", json=queue)).status_code in (200, 201)
        created = await callback.post(
            "/v1/callbacks",
            json={
                "request_id": "e2e-survey",
                "source": "missed_call",
                "first_contact_at": datetime.now(UTC).isoformat(),
                "phone": CUSTOMER,
                "queue": "support",
                "language": "fi",
                "consent": {"sms": True, "email": False},
            },
        )
        assert created.status_code == 201, created.text
        callback_id = created.json()["id"]
        [confirmation] = await asyncio.to_thread(gateway.wait_for, 1)
        assert confirmation.json()["to"] == CUSTOMER

        claimed = await callback.post("/v1/queue/claim", json={"agent_id": "anna"})
        assert claimed.json()["id"] == callback_id
        reached = await callback.post(
            f"/v1/callbacks/{callback_id}/attempts", json={"agent_id": "anna", "outcome": "reached"}
        )
        assert reached.status_code == 201, reached.text

        requests = await asyncio.to_thread(gateway.wait_for, 2)
        question = requests[1].json()
        assert (question["to"], question["sender"]) == (CUSTOMER, SURVEY_FROM)
        assert "Kuinka hyvin onnistuimme auttamaan?" in question["text"]

        async with httpx.AsyncClient() as twilio_side:
            replied = await play(
                twilio_side,
                f"{stack.url('intake')}/v1/webhooks/twilio/sms",
                {
                    "MessageSid": "SM" + "5" * 32,
                    "AccountSid": ACCOUNT_SID,
                    "From": CUSTOMER,
                    "To": SURVEY_FROM,
                    "Body": "5 kiitos",
                    "NumMedia": "0",
                },
            )
        assert replied.status_code == 200, replied.text
        assert replied.text.endswith("<Response/>")

        async def answered() -> dict[str, Any] | None:
            found = await history.get("/v1/customers", params={"phone": CUSTOMER})
            if found.status_code != 200 or not found.json()["items"]:
                return None
            customer = found.json()["items"][0]["id"]
            page = await history.get(
                f"/v1/customers/{customer}/timeline", params={"type": "survey_answered"}
            )
            items: list[dict[str, Any]] = page.json()["items"]
            return items[0] if items else None

        event = await wait_until(answered)
        assert (event["channel"], event["direction"]) == ("sms", "inbound")
        assert event["data"]["score"] == 5
        assert event["data"]["comment"] == "kiitos"
        assert (event["data"]["queue"], event["data"]["agent_id"]) == ("support", "anna")
    finally:
        await callback.aclose()
        await history.aclose()
