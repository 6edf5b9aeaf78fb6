"""Inbound SMS (§13): Twilio Messaging's signed form and the Standard-Webhooks gateway form,
stored with their forward to callback before the answer."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from httpx import AsyncClient
from twilio.request_validator import RequestValidator

from services.intake.models import Inbound, IntakeOutbox
from services.intake.telephony.twilio import TWIML_EMPTY
from shared.jsonutil import dumps
from tests.intake.conftest import PUBLIC_BASE_URL, TWILIO_TOKEN
from tests.support.signing import new_secret, signed_headers

TWILIO_PATH = "/v1/webhooks/twilio/sms"
GATEWAY_PATH = "/v1/webhooks/sms"
SMS_SECRET = new_secret()

Rows = Callable[[], Awaitable[list[Inbound]]]
Outbox = Callable[[], Awaitable[list[IntakeOutbox]]]


@pytest.fixture
def intake_overrides() -> dict[str, Any]:
    return {"inbound_sms_webhook_secrets": SMS_SECRET}


def twilio_form(**overrides: str) -> dict[str, str]:
    form = {
        "MessageSid": f"SM{secrets.token_hex(16)}",
        "AccountSid": "AC" + "0" * 32,
        "From": "+358401234567",
        "To": "+358401110000",
        "Body": "5 kiitos",
        "NumMedia": "0",
    }
    form.update(overrides)
    return form


async def post_twilio(
    intake: AsyncClient, form: dict[str, str], *, signature: str | None = None
) -> Any:
    url = PUBLIC_BASE_URL + TWILIO_PATH
    signed = signature or RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    return await intake.post(
        TWILIO_PATH,
        content=urlencode(form),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signed,
        },
    )


def gateway_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": f"gw-{secrets.token_hex(6)}",
        "from": "040 123 4567",
        "to": "+358401110000",
        "text": "viisi",
        "received_at": "2026-12-06T08:00:00Z",
    }
    message.update(overrides)
    return message


async def post_gateway(
    intake: AsyncClient, message: dict[str, Any], *, secret: str = SMS_SECRET
) -> Any:
    body = dumps(message)
    return await intake.post(GATEWAY_PATH, content=body, headers=signed_headers(secret, body))


async def test_a_twilio_reply_is_stored_forwarded_and_answered_with_empty_twiml(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Outbox
) -> None:
    form = twilio_form()
    response = await post_twilio(intake, form)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == TWIML_EMPTY
    (row,) = await inbound_rows()
    assert (row.provider, row.kind, row.external_id, row.phone, row.status) == (
        "twilio_sms",
        "sms",
        form["MessageSid"],
        "+358401234567",
        "accepted",
    )
    (forward,) = await outbox_rows()
    assert (forward.destination, forward.path) == ("callback", "/v1/inbound-sms")
    assert forward.payload["id"] == row.id
    assert (forward.payload["sender"], forward.payload["text"]) == ("+358401234567", "5 kiitos")


async def test_twilio_redelivering_a_message_forwards_it_once(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Outbox
) -> None:
    form = twilio_form()
    first = await post_twilio(intake, form)
    again = await post_twilio(intake, form)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["x-ringback-status"] == "duplicate"
    assert again.headers["x-ringback-inbound-id"] == first.headers["x-ringback-inbound-id"]
    assert len(await inbound_rows()) == 1
    assert len(await outbox_rows()) == 1


async def test_a_bad_twilio_signature_is_403_and_nothing_is_stored(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Outbox
) -> None:
    form = twilio_form()
    forged = RequestValidator("not-the-token").compute_signature(
        PUBLIC_BASE_URL + TWILIO_PATH, form
    )
    response = await post_twilio(intake, form, signature=forged)
    tampered = twilio_form(Body="1")
    signed_for_other = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_BASE_URL + TWILIO_PATH, form
    )
    changed = await post_twilio(intake, tampered, signature=signed_for_other)

    for answer in (response, changed):
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert await inbound_rows() == []
    assert await outbox_rows() == []


async def test_a_signed_twilio_form_without_a_sender_is_kept_as_rejected(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Outbox
) -> None:
    form = twilio_form()
    del form["From"]
    response = await post_twilio(intake, form)

    assert response.status_code == 422
    assert response.json()["inbound_id"]
    (row,) = await inbound_rows()
    assert (row.status, row.kind) == ("rejected", "sms")
    assert "from" in (row.reason or "")
    assert await outbox_rows() == []


async def test_a_gateway_message_is_stored_and_forwarded(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Outbox
) -> None:
    message = gateway_message()
    response = await post_gateway(intake, message)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    (row,) = await inbound_rows()
    assert (row.provider, row.external_id, row.phone) == (
        "sms_gateway",
        message["id"],
        "+358401234567",
    )
    (forward,) = await outbox_rows()
    assert forward.payload == {
        "id": row.id,
        "sender": "040 123 4567",
        "to": "+358401110000",
        "text": "viisi",
        "received_at": "2026-12-06T08:00:00Z",
    }


async def test_a_replayed_gateway_message_is_a_duplicate(
    intake: AsyncClient, outbox_rows: Outbox
) -> None:
    body = dumps(gateway_message())
    headers = signed_headers(SMS_SECRET, body)
    first = await intake.post(GATEWAY_PATH, content=body, headers=headers)
    again = await intake.post(GATEWAY_PATH, content=body, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert (again.json()["id"], again.json()["status"]) == (first.json()["id"], "duplicate")
    assert len(await outbox_rows()) == 1


async def test_the_gateway_needs_its_own_secret(
    intake: AsyncClient, webhook_secret: str, inbound_rows: Rows
) -> None:
    # The call webhooks' secret does not sign SMS: neither can forge the other.
    response = await post_gateway(intake, gateway_message(), secret=webhook_secret)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await inbound_rows() == []


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ({"id": "gw-1", "text": "5"}, 422),
        (gateway_message(text="x" * 1601), 422),
        (["not", "an", "object"], 422),
    ],
)
async def test_a_signed_but_unusable_gateway_message_is_kept_and_refused(
    intake: AsyncClient, inbound_rows: Rows, message: Any, status: int
) -> None:
    response = await post_gateway(intake, message)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    (row,) = await inbound_rows()
    assert row.status == "rejected"


async def test_without_a_secret_the_gateway_webhook_is_refused(
    intake_settings: Any, clean_db: None
) -> None:
    from services.intake.app import create_app
    from tests.conftest import serve_asgi

    settings = intake_settings.model_copy(update={"inbound_sms_webhook_secrets": None})
    async for client in serve_asgi(create_app(settings)):
        response = await post_gateway(client, gateway_message())
        assert response.status_code == 403
        assert "RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS" in response.json()["detail"]
