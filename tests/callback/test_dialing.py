"""Starting a dial (§10): who may, what is refused and why, and the webhook dialer's signed
`dial.requested` as a PBX receives it (checked with the official `standardwebhooks`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from services.callback import dialing as dialing_module
from services.callback.app import create_app
from services.callback.models import DoNotCall
from services.callback.settings import CallbackSettings
from shared.contracts import DialEvent
from shared.db import utcnow
from tests.callback.conftest import RunWorker
from tests.callback.helpers import (
    callback_body,
    claim,
    is_problem,
    plan_body,
    put_agent,
    put_queue,
    set_callback,
)
from tests.conftest import serve_asgi
from tests.support.gateways import SmsGateway, sms_gateway
from tests.support.signing import new_secret

DIALER_SECRET = new_secret()
QUEUE_NUMBER = "+358942451000"


@pytest.fixture
def pbx() -> Iterator[SmsGateway]:
    """A PBX's endpoint for `dial.requested`: records each request, answers 200."""
    with sms_gateway() as recorder:
        yield recorder


@pytest.fixture
def dialing_settings(settings: CallbackSettings, pbx: SmsGateway) -> CallbackSettings:
    return settings.model_copy(
        update={
            "dialer": "webhook",
            "dialer_webhook_url": f"{pbx.url}/dial",
            "dialer_webhook_secret": SecretStr(DIALER_SECRET),
            "wrap_up_seconds": 0,
        }
    )


@pytest.fixture
async def dialing(dialing_settings: CallbackSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for http in serve_asgi(create_app(dialing_settings)):
        yield http


async def _claimed(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str], **queue: Any
) -> str:
    await put_queue(client, admin, "billing", caller_id=QUEUE_NUMBER, **queue)
    await put_agent(client, admin, "anna", queues=["billing"])
    created = await client.post(
        "/v1/callbacks", json=callback_body(queue="billing", email=None), headers=auth
    )
    assert created.status_code == 201, created.text
    claimed = await claim(client, auth, "anna")
    assert claimed.status_code == 200, claimed.text
    callback_id: str = claimed.json()["id"]
    return callback_id


async def _dial(client: AsyncClient, auth: dict[str, str], callback_id: str, **body: Any) -> Any:
    return await client.post(
        f"/v1/callbacks/{callback_id}/dial", json={"agent_id": "anna", **body}, headers=auth
    )


async def test_without_a_dialer_the_call_button_answers_503(
    client: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    callback_id = await _claimed(client, auth, admin)
    answer = await _dial(client, auth, callback_id)
    assert is_problem(answer, 503)
    assert "RINGBACK_DIALER" in answer.json()["detail"]


async def test_only_the_claiming_agent_may_dial(
    dialing: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    await put_agent(dialing, admin, "ben", queues=["billing"])
    answer = await dialing.post(
        f"/v1/callbacks/{callback_id}/dial", json={"agent_id": "ben"}, headers=auth
    )
    assert is_problem(answer, 409)
    assert answer.json()["type"].endswith("not-claimant")


@pytest.mark.parametrize(
    ("phone", "status", "reason"),
    [
        ("+358600123456", 422, "number-not-callable"),  # premium rate
        ("+4915112345678", 422, "country-not-allowed"),  # a German mobile
    ],
)
async def test_numbers_we_do_not_dial_are_refused_with_the_reason(
    dialing: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    phone: str,
    status: int,
    reason: str,
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    # Stored before the refusal rules of creation applied (an older callback, a moved number).
    await set_callback(sessions, callback_id, phone=phone)
    answer = await _dial(dialing, auth, callback_id)
    assert is_problem(answer, status)
    assert answer.json()["reason"] == reason


async def test_closed_hours_are_refused_unless_the_agent_gives_a_reason(
    dialing: AsyncClient, auth: dict[str, str], admin: dict[str, str]
) -> None:
    local = utcnow().astimezone(ZoneInfo("Europe/Helsinki"))
    # Open on the days other than today only: closed at this moment, whatever the hour.
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    others = tuple(d for i, d in enumerate(days) if i != local.weekday())
    callback_id = await _claimed(dialing, auth, admin, capacity=plan_body(days=others))
    closed = await _dial(dialing, auth, callback_id)
    assert is_problem(closed, 409)
    assert closed.json()["reason"] == "outside-hours"
    reason = "the customer asked for a call today"
    opened = await _dial(dialing, auth, callback_id, reason=reason)
    assert opened.status_code == 202, opened.text
    callback = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    assert callback["dials"][0]["reason"] == reason


async def test_dnc_numbers_are_never_dialed(
    dialing: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    phone = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()["phone"]
    # On the list by another way than the API (which would close the callback at once): an
    # operator's import, or a request that raced the claim.
    async with sessions() as session:
        session.add(DoNotCall(phone=phone, created_at=utcnow()))
        await session.commit()
    answer = await _dial(dialing, auth, callback_id)
    assert is_problem(answer, 409)
    assert answer.json()["reason"] == "do-not-call"


async def test_the_webhook_dialer_sends_a_signed_request_and_the_reports_propose_the_outcome(
    dialing: AsyncClient,
    dialing_settings: CallbackSettings,
    auth: dict[str, str],
    admin: dict[str, str],
    pbx: SmsGateway,
    run_worker: RunWorker,
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    started = await _dial(dialing, auth, callback_id)
    assert started.status_code == 202, started.text
    dial_id = started.json()["dial_id"]
    await run_worker(dialing_settings)

    [request] = pbx.requests
    # The PBX checks it with the reference library, with its own secret.
    message = Webhook(DIALER_SECRET).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == dial_id
    assert message["type"] == "dial.requested"
    assert (message["dial_id"], message["callback_id"]) == (dial_id, callback_id)
    assert message["customer_phone"] == "+358401234567"
    assert message["caller_id"] == QUEUE_NUMBER
    assert message["agent"]["id"] == "anna"
    assert message["report_to"].endswith("/v1/webhooks/dialer")

    # What the PBX reports (forwarded by intake's relay as these contracts).
    for leg, status in (("agent", "answered"), ("customer", "ringing"), ("customer", "busy")):
        event = DialEvent.model_validate(
            {"leg": leg, "status": status, "occurred_at": utcnow().isoformat()}
        )
        answer = await dialing.post(
            f"/v1/dials/{dial_id}/events", json=event.model_dump(mode="json"), headers=auth
        )
        assert answer.status_code == 200, answer.text
    # A repeated report records nothing more.
    await dialing.post(
        f"/v1/dials/{dial_id}/events", json=event.model_dump(mode="json"), headers=auth
    )
    callback = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    [attempt] = callback["attempts"]
    assert (attempt["outcome"], attempt["final"]) == ("busy", False)
    assert callback["dials"][0]["line_result"] == "busy"

    # Wrap-up time 0: the worker makes it final, and it takes effect (a retry later).
    await run_worker(dialing_settings)
    callback = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    assert callback["attempts"][0]["final"] is True
    assert callback["status"] == "pending"


async def test_a_second_attempt_waits_for_the_wrap_up(
    dialing: AsyncClient,
    dialing_settings: CallbackSettings,
    auth: dict[str, str],
    admin: dict[str, str],
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    dial_id = (await _dial(dialing, auth, callback_id)).json()["dial_id"]
    for status in ("answered", "completed"):
        event = {"leg": "customer", "status": status, "occurred_at": utcnow().isoformat()}
        await dialing.post(f"/v1/dials/{dial_id}/events", json=event, headers=auth)
    typed = await dialing.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": "anna", "outcome": "reached"},
        headers=auth,
    )
    assert is_problem(typed, 409)
    again = await _dial(dialing, auth, callback_id)
    assert is_problem(again, 409)
    assert (
        datetime.fromisoformat(
            (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()[
                "lease_expires_at"
            ]
        )
        > utcnow()
    )


async def test_a_long_call_keeps_the_claim_and_a_silent_one_frees_the_callback(
    dialing: AsyncClient,
    dialing_settings: CallbackSettings,
    auth: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    callback_id = await _claimed(dialing, auth, admin)
    dial_id = (await _dial(dialing, auth, callback_id)).json()["dial_id"]
    event = {"leg": "customer", "status": "answered", "occurred_at": utcnow().isoformat()}
    await dialing.post(f"/v1/dials/{dial_id}/events", json=event, headers=auth)
    # Twenty minutes of conversation, nothing reported: the lease would have run out.
    await set_callback(sessions, callback_id, lease_expires_at=utcnow() + timedelta(seconds=5))
    async with sessions() as session:
        await dialing_module.sweep(session=session, settings=dialing_settings)
        await session.commit()
    callback = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    lease = datetime.fromisoformat(callback["lease_expires_at"])
    assert lease > utcnow() + timedelta(minutes=dialing_settings.claim_lease_minutes - 1)

    # The phone system never reports the end: after `dial_stale_minutes` the dial is unknown.
    later = utcnow() + timedelta(minutes=dialing_settings.dial_stale_minutes + 1)
    async with sessions() as session:
        await dialing_module.sweep(session=session, settings=dialing_settings, now=later)
        await session.commit()
    callback = (await dialing.get(f"/v1/callbacks/{callback_id}", headers=auth)).json()
    assert callback["dials"][0]["status"] == "unknown"
    assert callback["attempts"] == []
