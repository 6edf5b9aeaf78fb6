"""Generic CTI events: missed is an inbound hangup without an answer, whatever the order."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from httpx import AsyncClient, Response

from services.intake.models import Inbound, IntakeOutbox
from tests.conftest import serve_asgi
from tests.intake import payloads as p
from tests.intake.conftest import CTI_TOKEN

URL = f"/v1/webhooks/cti/{CTI_TOKEN}"
Rows = Callable[[], Awaitable[list[Inbound]]]
Forwards = Callable[[], Awaitable[list[IntakeOutbox]]]


def call_id() -> str:
    return f"{secrets.token_hex(4)}-de8d-4ffc-817b-7f6993204159"


async def send(client: AsyncClient, event: dict[str, Any], url: str = URL) -> Response:
    return await client.post(url, json=event)


def types(rows: list[IntakeOutbox]) -> list[str]:
    return [row.payload.get("type") or row.path for row in rows]


async def test_inbound_hangup_without_answer_is_missed(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    cid = call_id()
    new = await send(intake, p.cti("newCall", cid, **{"from": "040 765 4321"}))
    hangup = await send(intake, p.cti("hangup", cid, **{"from": "unknown"}))

    assert new.status_code == hangup.status_code == 202
    assert new.json()["status"] == "recorded"
    assert hangup.json()["status"] == "accepted"
    history, callback = await outbox_rows()
    assert history.payload["type"] == "missed_call"
    # The number comes from the newCall, which a helpdesk sends with the caller id.
    assert callback.payload["phone"] == "+358407654321"


@pytest.mark.parametrize("cause", ["normalClearing", "busy", "cancel", "noAnswer", "notFound"])
async def test_any_cause_but_forwarded_is_missed_for_a_known_call(
    intake: AsyncClient, outbox_rows: Forwards, cause: str
) -> None:
    cid = call_id()
    await send(intake, p.cti("newCall", cid))
    response = await send(intake, p.cti("hangup", cid, cause=cause))
    assert response.json()["status"] == "accepted"
    assert types(await outbox_rows()) == ["missed_call", "/v1/callbacks"]


async def test_forwarded_call_is_not_missed(intake: AsyncClient, outbox_rows: Forwards) -> None:
    cid = call_id()
    await send(intake, p.cti("newCall", cid))
    response = await send(intake, p.cti("hangup", cid, cause="forwarded"))
    assert response.json()["status"] == "recorded"
    assert await outbox_rows() == []


async def test_answered_call_is_recorded_not_missed(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    cid = call_id()
    for event in ("newCall", "answer", "hangup"):
        extra = {"cause": "normalClearing"} if event == "hangup" else {}
        assert (await send(intake, p.cti(event, cid, **extra))).status_code == 202
    rows = await outbox_rows()
    assert types(rows) == ["call_answered", "/v1/answered-calls"]
    assert rows[1].payload["phone"] == "+358401234567"


async def test_answer_after_hangup_changes_nothing(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    cid = call_id()
    await send(intake, p.cti("newCall", cid))
    await send(intake, p.cti("hangup", cid))
    late = await send(intake, p.cti("answer", cid))

    assert late.status_code == 202
    assert late.json()["status"] == "recorded"
    assert types(await outbox_rows()) == ["missed_call", "/v1/callbacks"]
    assert (await inbound_rows())[-1].summary["notes"] == {"reason": "answer after hangup"}


async def test_answer_before_new_call_still_prevents_missed(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    cid = call_id()
    await send(intake, p.cti("answer", cid))
    await send(intake, p.cti("hangup", cid, cause="normalClearing"))
    await send(intake, p.cti("newCall", cid))
    assert types(await outbox_rows()) == ["call_answered", "/v1/answered-calls"]


async def test_repeated_event_is_a_duplicate_not_an_error(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    cid = call_id()
    await send(intake, p.cti("newCall", cid))
    first = await send(intake, p.cti("hangup", cid))
    again = await send(intake, p.cti("hangup", cid))
    assert again.status_code == 202
    assert again.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(await inbound_rows()) == 2
    assert len(await outbox_rows()) == 2


@pytest.mark.parametrize("cause", ["cancel", "noAnswer", "busy", "congestion"])
async def test_hangup_of_an_unknown_call_that_nobody_answered_is_missed(
    intake: AsyncClient, outbox_rows: Forwards, cause: str
) -> None:
    response = await send(intake, p.cti("hangup", call_id(), cause=cause))
    assert response.json()["status"] == "accepted"
    assert types(await outbox_rows()) == ["missed_call", "/v1/callbacks"]


@pytest.mark.parametrize("cause", ["normalClearing", "forwarded", "notFound"])
async def test_hangup_of_an_unknown_call_with_other_causes_is_recorded(
    intake: AsyncClient, outbox_rows: Forwards, cause: str
) -> None:
    response = await send(intake, p.cti("hangup", call_id(), cause=cause))
    assert response.json()["status"] == "recorded"
    assert await outbox_rows() == []


async def test_outbound_calls_are_never_missed(intake: AsyncClient, outbox_rows: Forwards) -> None:
    cid = call_id()
    await send(intake, p.cti("newCall", cid, direction="out"))
    response = await send(intake, p.cti("hangup", cid, direction="out"))
    assert response.json()["status"] == "recorded"
    assert await outbox_rows() == []


async def test_form_encoded_events_and_call_id_alias(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    event = p.cti("hangup", "x")
    del event["callId"]
    event["call_id"] = call_id()
    response = await intake.post(
        URL,
        content=urlencode(event),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"


async def test_the_documented_example_with_an_international_number(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    # From docs/providers.md: a German number without + or 00, as many PBXs send it.
    example = {
        "event": "hangup",
        "from": "493023125741",
        "to": "492214710334",
        "direction": "in",
        "callId": "307fa962-de8d-4ffc-817b-7f6993204159",
        "user": "Emma Taylor",
        "cause": "noAnswer",
    }
    response = await send(intake, example)
    assert response.json()["status"] == "accepted"
    _, callback = await outbox_rows()
    assert callback.payload["phone"] == "+493023125741"
    # Germany is not on the SMS allow-list: the callback happens, nothing texts the number.
    assert callback.payload["consent"]["sms"] is False


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (p.cti("hangup", "c1", direction="inbound"), "direction"),
        ({k: v for k, v in p.cti("hangup", "c2").items() if k != "direction"}, "direction"),
        (p.cti("ring", "c3"), "event"),
        ({k: v for k, v in p.cti("hangup", "c4").items() if k != "callId"}, "callId"),
    ],
)
async def test_malformed_events_are_kept_and_refused(
    intake: AsyncClient, inbound_rows: Rows, event: dict[str, Any], reason: str
) -> None:
    response = await send(intake, event)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    [row] = await inbound_rows()
    assert row.status == "rejected"


async def test_a_wrong_token_is_refused_and_not_stored(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    response = await send(intake, p.cti("hangup", call_id()), url="/v1/webhooks/cti/guess")
    assert response.status_code == 401
    assert await inbound_rows() == []


async def test_refused_when_no_token_is_configured(intake_settings: Any, clean_db: None) -> None:
    from services.intake.app import create_app

    settings = intake_settings.model_copy(update={"cti_token": None})
    async for client in serve_asgi(create_app(settings)):
        response = await send(client, p.cti("hangup", call_id()))
        assert response.status_code == 403


async def test_the_token_is_not_kept_with_the_record(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    await send(intake, p.cti("hangup", call_id()))
    [row] = await inbound_rows()
    assert CTI_TOKEN not in repr(row.headers) + (row.query or "")
