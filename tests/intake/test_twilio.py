"""Twilio Voice callbacks: the signature as Twilio computes it, and every missed/answered branch."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pytest
from httpx import AsyncClient, Response
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from services.intake.models import Inbound, IntakeOutbox
from services.intake.telephony.twilio import TWIML_EMPTY, compute_signature, url_variants
from tests.conftest import serve_asgi
from tests.intake import payloads as p
from tests.intake.conftest import PUBLIC_BASE_URL, TWILIO_TOKEN

PATH = "/v1/webhooks/twilio"

Rows = Callable[[], Awaitable[list[Inbound]]]
Forwards = Callable[[], Awaitable[list[IntakeOutbox]]]


class MultiDict(dict[str, list[str]]):
    """What Flask hands Twilio's validator for repeated form fields."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def sign(url: str, params: Mapping[str, str] | MultiDict, token: str = TWILIO_TOKEN) -> str:
    """The signature by Twilio's own SDK, the reference."""
    signature: str = RequestValidator(token).compute_signature(url, params)
    return signature


async def post_twilio(
    client: AsyncClient,
    params: Mapping[str, str],
    *,
    query: str = "",
    signed_url: str | None = None,
    token: str = TWILIO_TOKEN,
) -> Response:
    url = f"{PUBLIC_BASE_URL}{PATH}" + (f"?{query}" if query else "")
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": sign(signed_url or url, params, token),
    }
    target = PATH + (f"?{query}" if query else "")
    return await client.post(target, content=urlencode(list(params.items())), headers=headers)


# --- signature ----------------------------------------------------------------------------


def test_the_published_test_vector() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert compute_signature("12345", url, {k: [v] for k, v in params.items()}) == expected
    assert RequestValidator("12345").compute_signature(url, params) == expected


@given(
    st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8),
        st.lists(st.text(max_size=10), min_size=1, max_size=3, unique=True),
        max_size=6,
    ),
    st.text(max_size=20),
)
def test_signature_agrees_with_twilios_validator(params: dict[str, list[str]], token: str) -> None:
    url = "https://example.com/hook?x=1"
    assert compute_signature(token, url, params) == RequestValidator(token).compute_signature(
        url, MultiDict(params)
    )


def test_url_variants_add_or_remove_only_the_default_port() -> None:
    assert url_variants("https://a.example/x?y=1") == [
        "https://a.example/x?y=1",
        "https://a.example:443/x?y=1",
    ]
    assert url_variants("http://a.example:80/x") == ["http://a.example:80/x", "http://a.example/x"]
    assert url_variants("https://a.example:8443/x") == ["https://a.example:8443/x"]


async def test_a_signed_callback_is_accepted(intake: AsyncClient) -> None:
    response = await post_twilio(intake, p.twilio_inbound_status(p.sid(), "ringing"))
    assert response.status_code == 202, response.text


async def test_the_url_may_be_signed_with_the_default_port(intake: AsyncClient) -> None:
    signed = f"{PUBLIC_BASE_URL}:443{PATH}?kind=status"
    params = p.twilio_inbound_status(p.sid(), "ringing")
    response = await post_twilio(intake, params, query="kind=status", signed_url=signed)
    assert response.status_code == 202, response.text


async def test_a_configured_port_may_be_left_out_of_the_signature(
    settings_kwargs: dict[str, Any], intake_settings: Any, clean_db: None
) -> None:
    from services.intake.app import create_app

    settings = intake_settings.model_copy(
        update={"public_base_url": "https://ringback.example.com:443"}
    )
    async for client in serve_asgi(create_app(settings)):
        params = p.twilio_inbound_status(p.sid(), "ringing")
        response = await post_twilio(client, params, signed_url=f"{PUBLIC_BASE_URL}{PATH}")
        assert response.status_code == 202, response.text


async def test_query_string_is_signed(intake: AsyncClient) -> None:
    params = p.twilio_inbound_status(p.sid(), "ringing")
    # Signed for another query than the one requested.
    response = await post_twilio(
        intake, params, query="a=1", signed_url=f"{PUBLIC_BASE_URL}{PATH}?a=2"
    )
    assert response.status_code == 401


@pytest.mark.parametrize("dedupe", [True, False])
async def test_repeated_parameters(intake: AsyncClient, dedupe: bool) -> None:
    call_sid = p.sid()
    pairs: Sequence[tuple[str, str]] = [
        *p.twilio_inbound_status(call_sid, "ringing").items(),
        ("StirVerstat", "TN-Validation-Passed-B"),
        ("StirVerstat", "TN-Validation-Passed-A"),
        ("Tag", "x"),
        ("Tag", "x"),
    ]
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    url = f"{PUBLIC_BASE_URL}{PATH}"
    # Twilio's Python SDK counts a repeated identical value once; docs/providers.md every time.
    signature = (
        RequestValidator(TWILIO_TOKEN).compute_signature(url, MultiDict(grouped))
        if dedupe
        else compute_signature(TWILIO_TOKEN, url, grouped)
    )
    response = await intake.post(
        PATH,
        content=urlencode(pairs),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": signature,
        },
    )
    assert response.status_code == 202, response.text


async def test_json_body_signed_by_its_hash(intake: AsyncClient, inbound_rows: Rows) -> None:
    body = b'{"CallSid": "CA0123", "CallStatus": "ringing", "Direction": "inbound"}'
    query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
    url = f"{PUBLIC_BASE_URL}{PATH}?{query}"
    validator = RequestValidator(TWILIO_TOKEN)
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body.decode(), signature)
    headers = {"content-type": "application/json", "x-twilio-signature": signature}

    good = await intake.post(f"{PATH}?{query}", content=body, headers=headers)
    tampered = await intake.post(
        f"{PATH}?{query}", content=body.replace(b"0123", b"9999"), headers=headers
    )

    assert good.status_code == 202, good.text
    assert tampered.status_code == 401
    assert len(await inbound_rows()) == 1


async def test_bad_or_missing_signature_is_refused_and_not_stored(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    params = p.twilio_inbound_status(p.sid(), "no-answer")
    forged = await post_twilio(intake, params, token="not-the-token")
    missing = await intake.post(
        PATH,
        content=urlencode(params),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert forged.status_code == missing.status_code == 401
    assert forged.headers["content-type"] == "application/problem+json"
    assert await inbound_rows() == []
    metrics = (await intake.get("/metrics")).text
    assert 'ringback_intake_unauthenticated_total{provider="twilio"} 2.0' in metrics


async def test_refused_when_no_auth_token_is_configured(
    intake_settings: Any, clean_db: None
) -> None:
    from services.intake.app import create_app

    settings = intake_settings.model_copy(update={"twilio_auth_token": None})
    async for client in serve_asgi(create_app(settings)):
        response = await post_twilio(client, p.twilio_inbound_status(p.sid(), "no-answer"))
        assert response.status_code == 403
        assert "RINGBACK_TWILIO_AUTH_TOKEN" in response.json()["detail"]


# --- what the callbacks mean ----------------------------------------------------------------


def kinds(rows: list[IntakeOutbox]) -> list[tuple[str, str]]:
    return [
        (row.destination, row.payload.get("type") or row.path.rsplit("/", 1)[-1]) for row in rows
    ]


MISSED_FORWARDS = [("history", "missed_call"), ("callback", "callbacks")]
ANSWERED_FORWARDS = [("history", "call_answered"), ("callback", "answered-calls")]


@pytest.mark.parametrize("dial_status", ["busy", "no-answer", "failed", "canceled"])
async def test_dial_action_not_answered_is_a_missed_call_answered_with_twiml(
    intake: AsyncClient, outbox_rows: Forwards, dial_status: str
) -> None:
    response = await post_twilio(intake, p.twilio_dial_action(p.sid(), dial_status))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == TWIML_EMPTY
    assert response.headers["x-ringback-status"] == "accepted"
    forwards = await outbox_rows()
    assert kinds(forwards) == MISSED_FORWARDS
    assert forwards[1].payload["phone"] == p.CUSTOMER
    assert forwards[1].payload["source"] == "missed_call"


@pytest.mark.parametrize("status", ["no-answer", "busy", "canceled", "failed"])
async def test_child_leg_not_answered_calls_back_the_parents_caller(
    intake: AsyncClient, outbox_rows: Forwards, status: str
) -> None:
    parent = p.sid()
    # The parent's first request tells who called; the child leg only knows the agent.
    first = await post_twilio(intake, p.twilio_voice_request(parent, From="+358 40 7654321"))
    assert first.status_code == 202
    response = await post_twilio(intake, p.twilio_child_status(p.sid(), parent, status))

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    forwards = await outbox_rows()
    assert kinds(forwards) == MISSED_FORWARDS
    assert forwards[1].payload["phone"] == "+358407654321"
    assert forwards[0].payload["data"]["call_id"] == parent


async def test_child_leg_of_an_unknown_parent_falls_back_to_from(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    child = p.twilio_child_status(p.sid(), p.sid(), "no-answer", From=p.CUSTOMER)
    response = await post_twilio(intake, child)
    assert response.json()["status"] == "accepted"
    assert (await outbox_rows())[1].payload["phone"] == p.CUSTOMER


async def test_caller_hanging_up_in_the_queue_is_a_missed_call(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    response = await post_twilio(intake, p.twilio_enqueue_action(p.sid(), "hangup"))
    assert response.status_code == 200
    assert response.content == TWIML_EMPTY
    assert kinds(await outbox_rows()) == MISSED_FORWARDS


async def test_a_bridged_queue_call_is_not_missed(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    response = await post_twilio(intake, p.twilio_enqueue_action(p.sid(), "bridged"))
    assert response.headers["x-ringback-status"] == "recorded"
    assert await outbox_rows() == []


@pytest.mark.parametrize("status", ["no-answer", "busy", "canceled", "failed"])
async def test_plain_inbound_status_not_answered_is_missed(
    intake: AsyncClient, outbox_rows: Forwards, status: str
) -> None:
    response = await post_twilio(intake, p.twilio_inbound_status(p.sid(), status))
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert kinds(await outbox_rows()) == MISSED_FORWARDS


async def test_completed_parent_after_an_answered_dial_is_call_answered(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    parent = p.sid()
    dial = await post_twilio(intake, p.twilio_dial_action(parent, "completed"))
    assert dial.headers["x-ringback-status"] == "recorded"
    done = await post_twilio(intake, p.twilio_inbound_status(parent, "completed"))

    assert done.status_code == 202
    forwards = await outbox_rows()
    assert kinds(forwards) == ANSWERED_FORWARDS
    assert forwards[1].payload["phone"] == p.CUSTOMER


async def test_child_leg_answered_then_parent_completed_is_call_answered(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    parent = p.sid()
    await post_twilio(intake, p.twilio_voice_request(parent))
    await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "completed"))
    await post_twilio(intake, p.twilio_inbound_status(parent, "completed"))
    assert kinds(await outbox_rows()) == ANSWERED_FORWARDS


async def test_completed_parent_without_a_known_answer_is_only_recorded(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    # The inbound trap: Twilio itself answered the parent to run TwiML.
    response = await post_twilio(intake, p.twilio_inbound_status(p.sid(), "completed"))
    assert response.json()["status"] == "recorded"
    assert await outbox_rows() == []
    [row] = await inbound_rows()
    assert row.status == "recorded"


async def test_several_signals_of_one_missed_call_make_one_missed_call(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    parent = p.sid()
    await post_twilio(intake, p.twilio_voice_request(parent))
    first = await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "no-answer"))
    second = await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "busy"))
    third = await post_twilio(intake, p.twilio_dial_action(parent, "no-answer"))

    assert first.json()["status"] == "accepted"
    assert second.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert third.headers["x-ringback-status"] == "duplicate"
    assert kinds(await outbox_rows()) == MISSED_FORWARDS


async def test_a_retried_callback_is_a_duplicate(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    params = p.twilio_inbound_status(p.sid(), "no-answer")
    first = await post_twilio(intake, params)
    again = await post_twilio(intake, params)
    assert again.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(await inbound_rows()) == 1
    assert len(await outbox_rows()) == 2


async def test_an_outbound_call_is_never_missed(intake: AsyncClient, outbox_rows: Forwards) -> None:
    params = p.twilio_inbound_status(p.sid(), "no-answer", Direction="outbound-api")
    response = await post_twilio(intake, params)
    assert response.json()["status"] == "recorded"
    assert await outbox_rows() == []


async def test_withheld_caller_is_recorded_without_a_callback(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    params = p.twilio_inbound_status(p.sid(), "no-answer", From="anonymous", Caller="anonymous")
    response = await post_twilio(intake, params)
    assert response.json()["status"] == "recorded"
    [event] = await outbox_rows()
    assert event.payload["type"] == "missed_call"
    assert event.payload["data"]["caller_withheld"] is True


async def test_an_unusable_action_is_kept_and_the_call_goes_on(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    params = p.twilio_dial_action("", "no-answer")
    response = await post_twilio(intake, params)
    # An error would make Twilio tell the caller "an application error has occurred".
    assert response.status_code == 200
    assert response.content == TWIML_EMPTY
    [row] = await inbound_rows()
    assert row.status == "rejected"
    assert "CallSid" in (row.reason or "")
    assert response.headers["x-ringback-inbound-id"] == row.id


async def test_an_unusable_status_callback_gets_a_problem(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    params = {k: v for k, v in p.twilio_inbound_status(p.sid(), "x").items() if k != "CallStatus"}
    response = await post_twilio(intake, params)
    assert response.status_code == 422
    assert response.json()["inbound_id"] == (await inbound_rows())[0].id
