"""Every inbound format carries the number the customer dialed and the queue on to callback (§9).

Callback routes a contact by the queue it names, else by the queue owning the number dialed;
intake's part is to forward both faithfully, from each format, and never the agent's number.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from httpx import AsyncClient, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import repository
from services.intake.models import Inbound, IntakeOutbox
from shared.contracts import AnsweredCall, CallbackCreate, EventIn
from tests.intake import payloads as p
from tests.intake.conftest import CTI_TOKEN, PUBLIC_BASE_URL
from tests.intake.test_twilio import PATH as TWILIO_PATH
from tests.intake.test_twilio import post_twilio, sign
from tests.support.signing import body_of, call_event, signed_headers

Rows = Callable[[], Awaitable[list[Inbound]]]
Forwards = Callable[[], Awaitable[list[IntakeOutbox]]]
MakeKey = Callable[..., Awaitable[str]]

CTI_URL = f"/v1/webhooks/cti/{CTI_TOKEN}"
# A second company number, so a test can tell the parent's `To` from any other number.
SALES_LINE = "+358923123456"


def forwards_by_path(rows: list[IntakeOutbox]) -> dict[str, dict[str, Any]]:
    """The payload of each forward, by where it goes; each is checked against its contract."""
    contract: dict[str, type[BaseModel]] = {
        "/v1/callbacks": CallbackCreate,
        "/v1/answered-calls": AnsweredCall,
        "/v1/events": EventIn,
    }
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        # What callback and history validate on arrival.
        contract[row.path].model_validate(row.payload)
        found[row.path] = row.payload
    return found


def cti_call_id() -> str:
    return f"{secrets.token_hex(4)}-de8d-4ffc-817b-7f6993204159"


async def post_generic(client: AsyncClient, secret: str, **overrides: Any) -> Response:
    body = body_of(call_event(**overrides))
    return await client.post(
        "/v1/webhooks/generic", content=body, headers=signed_headers(secret, body)
    )


# --- Twilio ---------------------------------------------------------------------------------


async def test_twilio_dial_action_forwards_the_number_dialed(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    response = await post_twilio(intake, p.twilio_dial_action(p.sid(), "no-answer"))

    assert response.status_code == 200, response.text
    sent = forwards_by_path(await outbox_rows())
    assert sent["/v1/callbacks"]["dialed"] == p.OUR_NUMBER
    assert "queue" not in sent["/v1/callbacks"]
    assert sent["/v1/events"]["data"]["dialed"] == p.OUR_NUMBER
    [row] = await inbound_rows()
    assert row.summary["dialed"] == p.OUR_NUMBER


async def test_twilio_queue_in_the_signed_url_verifies_and_is_forwarded(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    params = p.twilio_enqueue_action(p.sid(), "hangup")
    # Signed by Twilio's own validator over the full URL, query included.
    response = await post_twilio(intake, params, query="queue=billing")

    assert response.status_code == 200, response.text
    assert response.headers["x-ringback-status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert sent["/v1/callbacks"]["queue"] == "billing"
    assert sent["/v1/callbacks"]["dialed"] == p.OUR_NUMBER
    assert sent["/v1/events"]["data"]["queue"] == "billing"
    [row] = await inbound_rows()
    assert (row.query, row.summary["queue"]) == ("queue=billing", "billing")


async def test_twilio_queue_cannot_be_changed_without_breaking_the_signature(
    intake: AsyncClient, inbound_rows: Rows
) -> None:
    params = p.twilio_dial_action(p.sid(), "no-answer")
    signed_for = f"{PUBLIC_BASE_URL}{TWILIO_PATH}?queue=billing"
    response = await post_twilio(intake, params, query="queue=vip", signed_url=signed_for)

    assert response.status_code == 401
    assert await inbound_rows() == []


async def test_twilio_queue_key_with_spaces_in_the_signed_url(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    query = "queue=" + quote("Laskutus FI", safe="")
    url = f"{PUBLIC_BASE_URL}{TWILIO_PATH}?{query}"
    params = p.twilio_inbound_status(p.sid(), "no-answer")
    response = await intake.post(
        f"{TWILIO_PATH}?{query}",
        content=urlencode(params),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": sign(url, params),
        },
    )

    assert response.status_code == 202, response.text
    assert forwards_by_path(await outbox_rows())["/v1/callbacks"]["queue"] == "Laskutus FI"


@pytest.mark.parametrize("status", ["no-answer", "busy"])
async def test_twilio_child_leg_forwards_the_parents_to_never_the_agent(
    intake: AsyncClient, outbox_rows: Forwards, status: str
) -> None:
    parent = p.sid()
    first = await post_twilio(intake, p.twilio_voice_request(parent, To=SALES_LINE))
    assert first.status_code == 202
    response = await post_twilio(intake, p.twilio_child_status(p.sid(), parent, status))

    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert sent["/v1/callbacks"]["dialed"] == SALES_LINE
    assert sent["/v1/events"]["data"]["dialed"] == SALES_LINE
    assert p.AGENT not in repr(sent)


async def test_twilio_child_leg_of_an_unknown_parent_leaves_dialed_unset(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    child = p.twilio_child_status(p.sid(), p.sid(), "no-answer", From=p.CUSTOMER)
    response = await post_twilio(intake, child)

    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert sent["/v1/callbacks"]["phone"] == p.CUSTOMER
    # The child's `To` is the agent: no number is better than the wrong one.
    assert "dialed" not in sent["/v1/callbacks"]
    assert "dialed" not in sent["/v1/events"]["data"]
    assert p.AGENT not in repr(sent)
    [row] = await inbound_rows()
    assert "dialed" not in row.summary
    assert "parent" in row.summary["notes"]["dialed"]


async def test_twilio_child_leg_takes_the_queue_named_by_the_parents_url(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    parent = p.sid()
    await post_twilio(intake, p.twilio_voice_request(parent), query="queue=billing")
    # The child's status callback URL names no queue.
    await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "no-answer"))

    sent = forwards_by_path(await outbox_rows())
    assert (sent["/v1/callbacks"]["queue"], sent["/v1/callbacks"]["dialed"]) == (
        "billing",
        p.OUR_NUMBER,
    )


async def test_twilio_answered_call_carries_its_queue_and_number(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    parent = p.sid()
    await post_twilio(intake, p.twilio_voice_request(parent, To=SALES_LINE))
    await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "completed"))
    done = await post_twilio(
        intake, p.twilio_inbound_status(parent, "completed", To=SALES_LINE), query="queue=sales"
    )

    assert done.status_code == 202
    answered = forwards_by_path(await outbox_rows())["/v1/answered-calls"]
    assert (answered["queue"], answered["dialed"]) == ("sales", SALES_LINE)


@pytest.mark.parametrize("to", ["client:anna", "sip:support@pbx.example.com", "", "266"])
async def test_twilio_unparseable_to_is_accepted_without_dialed(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows, to: str
) -> None:
    params = p.twilio_dial_action(p.sid(), "no-answer", To=to, Called=to)
    response = await post_twilio(intake, params)

    assert response.status_code == 200
    assert response.headers["x-ringback-status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert "dialed" not in sent["/v1/callbacks"]
    [row] = await inbound_rows()
    assert urlencode({"To": to}).encode() in row.body


async def test_twilio_an_unusable_url_queue_is_set_aside_not_the_call(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    response = await post_twilio(
        intake, p.twilio_inbound_status(p.sid(), "no-answer"), query="queue=" + "q" * 201
    )

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert "queue" not in sent["/v1/callbacks"]
    [row] = await inbound_rows()
    assert "200 characters" in row.summary["queue_ignored"]


# --- CTI ----------------------------------------------------------------------------------


async def test_cti_forwards_to_in_e164_and_the_body_queue(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    cid = cti_call_id()
    await intake.post(CTI_URL, json=p.cti("newCall", cid))
    response = await intake.post(CTI_URL, json=p.cti("hangup", cid, queue="billing"))

    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    # The helpdesk sends `to` in national notation: "0942451000".
    assert (sent["/v1/callbacks"]["dialed"], sent["/v1/callbacks"]["queue"]) == (
        p.OUR_NUMBER,
        "billing",
    )
    assert (sent["/v1/events"]["data"]["dialed"], sent["/v1/events"]["data"]["queue"]) == (
        p.OUR_NUMBER,
        "billing",
    )
    assert (await inbound_rows())[-1].summary["dialed"] == p.OUR_NUMBER


async def test_cti_a_hangup_without_to_or_queue_keeps_what_new_call_said(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    cid = cti_call_id()
    await intake.post(CTI_URL, json=p.cti("newCall", cid, to="09 2312 3456", queue="sales"))
    hangup = {k: v for k, v in p.cti("hangup", cid).items() if k not in {"from", "to"}}
    response = await intake.post(CTI_URL, json=hangup)

    assert response.json()["status"] == "accepted"
    created = forwards_by_path(await outbox_rows())["/v1/callbacks"]
    assert (created["dialed"], created["queue"]) == (SALES_LINE, "sales")


async def test_cti_queue_in_the_url_is_forwarded(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    response = await intake.post(
        f"{CTI_URL}?queue=support", json=p.cti("hangup", cti_call_id(), cause="noAnswer")
    )

    assert response.json()["status"] == "accepted"
    assert forwards_by_path(await outbox_rows())["/v1/callbacks"]["queue"] == "support"
    [row] = await inbound_rows()
    # The token stays in the path, out of what is kept; the queue is kept for a replay.
    assert row.query == "queue=support"


async def test_cti_a_body_queue_beats_the_urls(intake: AsyncClient, outbox_rows: Forwards) -> None:
    cid = cti_call_id()
    await intake.post(f"{CTI_URL}?queue=support", json=p.cti("newCall", cid, queue="billing"))
    # The hangup names no queue itself: the newCall's body still beats the URL.
    await intake.post(f"{CTI_URL}?queue=support", json=p.cti("hangup", cid))
    other = cti_call_id()
    await intake.post(f"{CTI_URL}?queue=support", json=p.cti("hangup", other, queue="vip"))

    created = [row.payload for row in await outbox_rows() if row.path == "/v1/callbacks"]
    assert [c["queue"] for c in created] == ["billing", "vip"]


async def test_cti_an_unusable_url_queue_is_set_aside_not_the_call(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    url = f"{CTI_URL}?queue=" + quote("bad\x01key", safe="")
    response = await intake.post(url, json=p.cti("hangup", cti_call_id()))

    assert response.json()["status"] == "accepted"
    assert "queue" not in forwards_by_path(await outbox_rows())["/v1/callbacks"]
    [row] = await inbound_rows()
    assert "control characters" in row.summary["queue_ignored"]


async def test_cti_answered_call_carries_its_queue_and_number(
    intake: AsyncClient, outbox_rows: Forwards
) -> None:
    cid = cti_call_id()
    await intake.post(f"{CTI_URL}?queue=support", json=p.cti("newCall", cid))
    await intake.post(f"{CTI_URL}?queue=support", json=p.cti("answer", cid))

    answered = forwards_by_path(await outbox_rows())["/v1/answered-calls"]
    assert (answered["queue"], answered["dialed"]) == ("support", p.OUR_NUMBER)


@pytest.mark.parametrize("to", ["200", "anonymous", "pbx-trunk-7", "0"])
async def test_cti_unparseable_to_is_accepted_without_dialed(
    intake: AsyncClient, outbox_rows: Forwards, inbound_rows: Rows, to: str
) -> None:
    response = await intake.post(CTI_URL, json=p.cti("hangup", cti_call_id(), to=to))

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert "dialed" not in sent["/v1/callbacks"]
    assert "dialed" not in sent["/v1/events"]["data"]
    [row] = await inbound_rows()
    assert f'"to":"{to}"'.encode() in row.body.replace(b": ", b":")


async def test_cti_queue_with_control_characters_is_refused_and_kept(
    intake: AsyncClient, inbound_rows: Rows, outbox_rows: Forwards
) -> None:
    response = await intake.post(CTI_URL, json=p.cti("hangup", cti_call_id(), queue="a\x00b"))

    assert response.status_code == 422
    assert "queue" in response.json()["detail"]
    [row] = await inbound_rows()
    assert row.status == "rejected"
    assert await outbox_rows() == []


# --- generic --------------------------------------------------------------------------------


async def test_generic_forwards_to_in_e164_and_the_queue(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    response = await post_generic(intake, webhook_secret, to="09 4245 1000", queue="billing")

    assert response.status_code == 202, response.text
    sent = forwards_by_path(await outbox_rows())
    assert (sent["/v1/callbacks"]["dialed"], sent["/v1/callbacks"]["queue"]) == (
        p.OUR_NUMBER,
        "billing",
    )
    assert (sent["/v1/events"]["data"]["dialed"], sent["/v1/events"]["data"]["queue"]) == (
        p.OUR_NUMBER,
        "billing",
    )
    [row] = await inbound_rows()
    assert (row.summary["dialed"], row.summary["queue"]) == (p.OUR_NUMBER, "billing")


async def test_generic_answered_call_carries_its_queue_and_number(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Forwards
) -> None:
    await post_generic(intake, webhook_secret, status="answered", queue="sales", to=SALES_LINE)
    answered = forwards_by_path(await outbox_rows())["/v1/answered-calls"]
    assert (answered["queue"], answered["dialed"]) == ("sales", SALES_LINE)


@pytest.mark.parametrize("to", ["not a number", "1234", "+", None])
async def test_generic_unparseable_to_is_accepted_without_dialed(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Forwards, inbound_rows: Rows, to: Any
) -> None:
    response = await post_generic(intake, webhook_secret, to=to)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert "dialed" not in sent["/v1/callbacks"]
    assert sent["/v1/callbacks"]["queue"] == "billing"
    [row] = await inbound_rows()
    assert "dialed" not in row.summary
    if to is not None:
        assert f'"to":"{to}"'.encode() in row.body


@pytest.mark.parametrize("queue", [None, "", "   "])
async def test_generic_without_a_queue_forwards_none(
    intake: AsyncClient, webhook_secret: str, outbox_rows: Forwards, queue: str | None
) -> None:
    response = await post_generic(intake, webhook_secret, queue=queue)

    assert response.json()["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert "queue" not in sent["/v1/callbacks"]
    assert "queue" not in sent["/v1/events"]["data"]
    assert sent["/v1/callbacks"]["dialed"] == p.OUR_NUMBER


@pytest.mark.parametrize("queue", ["a\x00b", "line\nbreak", "q" * 201])
async def test_generic_unusable_queue_is_refused_and_kept(
    intake: AsyncClient, webhook_secret: str, inbound_rows: Rows, queue: str
) -> None:
    response = await post_generic(intake, webhook_secret, queue=queue)

    assert response.status_code == 422
    assert "queue" in response.json()["detail"]
    [row] = await inbound_rows()
    assert row.status == "rejected"


# --- contact requests -----------------------------------------------------------------------


@pytest.fixture
async def writer(make_key: MakeKey, clean_db: None) -> dict[str, str]:
    return {"authorization": f"Bearer {await make_key('intake:write')}"}


async def test_contact_request_forwards_its_queue(
    intake: AsyncClient, writer: dict[str, str], outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    body = {"channel": "web", "phone": "040 123 4567", "queue": "billing"}
    response = await intake.post("/v1/contact-requests", json=body, headers=writer)

    assert response.status_code == 202, response.text
    sent = forwards_by_path(await outbox_rows())
    assert sent["/v1/callbacks"]["queue"] == "billing"
    # Nobody dialed anything: a contact request names its queue or goes by callback's rules.
    assert "dialed" not in sent["/v1/callbacks"]
    assert sent["/v1/events"]["data"]["queue"] == "billing"
    [row] = await inbound_rows()
    assert row.summary["queue"] == "billing"


async def test_contact_request_without_a_queue_forwards_none(
    intake: AsyncClient, writer: dict[str, str], outbox_rows: Forwards
) -> None:
    body = {"channel": "chat", "phone": "040 123 4567"}
    response = await intake.post("/v1/contact-requests", json=body, headers=writer)

    assert response.status_code == 202, response.text
    sent = forwards_by_path(await outbox_rows())
    assert "queue" not in sent["/v1/callbacks"]
    assert "queue" not in sent["/v1/events"]["data"]


@pytest.mark.parametrize("queue", ["", "q" * 201, "a\x00b", "tab\there"])
async def test_contact_request_with_an_unusable_queue_is_422(
    intake: AsyncClient, writer: dict[str, str], inbound_rows: Rows, queue: str
) -> None:
    body = {"channel": "web", "phone": "040 123 4567", "queue": queue}
    response = await intake.post("/v1/contact-requests", json=body, headers=writer)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ["body", "queue"] in [e["loc"] for e in response.json()["errors"]]
    assert await inbound_rows() == []


async def test_the_openapi_document_names_the_url_queue(intake: AsyncClient) -> None:
    paths = (await intake.get("/openapi.json")).json()["paths"]

    def query_names(path: str) -> set[str]:
        parameters = paths[path]["post"].get("parameters", [])
        return {param["name"] for param in parameters if param["in"] == "query"}

    assert query_names("/v1/webhooks/twilio") == {"queue"}
    assert query_names("/v1/webhooks/cti/{token}") == {"queue"}
    assert query_names("/v1/webhooks/generic") == set()
    body = paths["/v1/contact-requests"]["post"]["requestBody"]["content"]["application/json"]
    assert "queue" in body["schema"]["properties"]


# --- replay -------------------------------------------------------------------------------


@pytest.fixture
async def admin(make_key: MakeKey, clean_db: None) -> dict[str, str]:
    return {"authorization": f"Bearer {await make_key('admin')}"}


@pytest.mark.parametrize(
    ("provider", "content_type", "body", "query"),
    [
        (
            "cti",
            "application/json",
            body_of(p.cti("hangup", "replayed-cti-call")),
            "queue=support",
        ),
        (
            "twilio",
            "application/x-www-form-urlencoded",
            urlencode(p.twilio_dial_action("CA" + "0" * 32, "no-answer")).encode(),
            "queue=support",
        ),
    ],
    ids=["cti", "twilio"],
)
async def test_a_replay_forwards_the_same_queue_and_number(
    intake: AsyncClient,
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Forwards,
    provider: str,
    content_type: str,
    body: bytes,
    query: str,
) -> None:
    # Kept as rejected by an older version, with the URL's query as it arrived.
    async with sessions() as session:
        inbound_id = await repository.insert_inbound(
            session,
            {
                "provider": provider,
                "kind": "call",
                "status": "rejected",
                "reason": "older code refused this",
                "content_type": content_type,
                "headers": {"content-type": content_type},
                "body": body,
                "query": query,
                "summary": {},
            },
        )
        await session.commit()

    response = await intake.post(f"/v1/inbound/{inbound_id}/replay", headers=admin)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["status"] == "accepted"
    sent = forwards_by_path(await outbox_rows())
    assert (sent["/v1/callbacks"]["queue"], sent["/v1/callbacks"]["dialed"]) == (
        "support",
        p.OUR_NUMBER,
    )
    assert (sent["/v1/events"]["data"]["queue"], sent["/v1/events"]["data"]["dialed"]) == (
        "support",
        p.OUR_NUMBER,
    )
