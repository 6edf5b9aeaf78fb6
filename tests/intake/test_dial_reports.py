"""What the phone system reports of a dial (§10), at intake: verified, translated, stored in
order before the answer, and nothing of the callers' numbers kept; bad input is a clear 4xx."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from twilio.request_validator import RequestValidator

from services.intake.models import IntakeOutbox
from shared.standard_webhooks import sign
from tests.intake.conftest import PUBLIC_BASE_URL, TWILIO_TOKEN
from tests.support.signing import new_secret

DIALER_SECRET = new_secret()
DIAL = "01a24884-441d-74dd-a3f6-7933181fe52e"
Rows = Callable[[], Awaitable[list[IntakeOutbox]]]


@pytest.fixture
def intake_overrides() -> dict[str, Any]:
    return {"dialer_webhook_secret": DIALER_SECRET}


async def twilio_post(
    intake: AsyncClient, path: str, form: dict[str, str], token: str = TWILIO_TOKEN
) -> Any:
    signature = RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, form)
    return await intake.post(path, data=form, headers={"x-twilio-signature": signature})


def dialer_post(intake: AsyncClient, body: bytes, secret: str = DIALER_SECRET) -> Any:
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": f"msg-{time.monotonic_ns()}",
        "webhook-timestamp": str(stamp),
    }
    headers["webhook-signature"] = sign(secret, headers["webhook-id"], stamp, body)
    return intake.post("/v1/webhooks/dialer", content=body, headers=headers)


async def test_twilios_words_become_the_dialers_and_no_number_is_kept(
    intake: AsyncClient, outbox_rows: Rows
) -> None:
    form = {
        "CallSid": "CA" + "1" * 32,
        "DialCallSid": "CA" + "2" * 32,
        "DialCallStatus": "no-answer",
        "DialCallDuration": "0",
        "From": "+358942451000",
        "To": "+358401110000",
    }
    answer = await twilio_post(intake, f"/v1/webhooks/twilio/dial/{DIAL}", form)
    assert answer.status_code == 200, answer.text
    assert b"<Hangup" in answer.content
    [row] = await outbox_rows()
    assert (row.destination, row.path) == ("callback", f"/v1/dials/{DIAL}/events")
    assert (row.payload["leg"], row.payload["status"]) == ("customer", "no_answer")
    stored = json.dumps(row.payload)
    assert "+358" not in stored


async def test_a_machine_is_reported_before_the_calls_end_in_the_dials_order(
    intake: AsyncClient, outbox_rows: Rows
) -> None:
    form = {
        "CallSid": "CA" + "1" * 32,
        "DialCallStatus": "completed",
        "AnsweredBy": "machine_start",
    }
    await twilio_post(intake, f"/v1/webhooks/twilio/dial/{DIAL}", form)
    rows = await outbox_rows()
    assert [r.payload["status"] for r in rows] == ["machine", "completed"]
    assert {r.ordering_key for r in rows} == {f"dial:{DIAL}"}


async def test_twilio_reports_signed_with_another_token_are_refused_and_not_stored(
    intake: AsyncClient, outbox_rows: Rows
) -> None:
    form = {"CallSid": "CA" + "1" * 32, "CallStatus": "ringing"}
    forged = await twilio_post(
        intake, f"/v1/webhooks/twilio/dial/{DIAL}/status?leg=agent", form, token="not-the-token"
    )
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/problem+json")
    assert await outbox_rows() == []


async def test_the_whisper_without_a_1_connects_nobody(intake: AsyncClient) -> None:
    form = {"CallSid": "CA" + "1" * 32, "Digits": "9"}
    answer = await twilio_post(intake, f"/v1/webhooks/twilio/dial/{DIAL}/connect", form)
    assert answer.status_code == 200
    assert b"<Dial" not in answer.content
    assert b"<Hangup" in answer.content


async def test_a_pbx_report_is_stored_and_bad_ones_get_clear_answers(
    intake: AsyncClient, outbox_rows: Rows
) -> None:
    good = json.dumps({"dial_id": DIAL, "leg": "customer", "status": "busy"}).encode()
    answer = await dialer_post(intake, good)
    assert answer.status_code == 202, answer.text
    [row] = await outbox_rows()
    assert (row.payload["leg"], row.payload["status"]) == ("customer", "busy")

    forged = await dialer_post(intake, good, secret=new_secret())
    assert forged.status_code == 401
    for bad in (
        b"{not json",
        json.dumps({"dial_id": DIAL, "leg": "customer", "status": "exploded"}).encode(),
        json.dumps({"dial_id": "../../x", "leg": "agent", "status": "ringing"}).encode(),
        json.dumps({"dial_id": DIAL, "leg": "agent", "status": "ringing", "duration": -1}).encode(),
        json.dumps(
            {"dial_id": DIAL, "leg": "agent", "status": "ringing", "occurred_at": "yesterday"}
        ).encode(),
    ):
        refused = await dialer_post(intake, bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert len(await outbox_rows()) == 1
