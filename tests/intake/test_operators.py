"""Operators: listing, reading and replaying inbound records (scope admin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import repository
from services.intake.models import Inbound, IntakeOutbox
from tests.intake.test_generic_webhook import post_call
from tests.support.signing import body_of, call_event, signed_headers

Rows = Callable[[], Awaitable[list[Inbound]]]
Forwards = Callable[[], Awaitable[list[IntakeOutbox]]]
MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture
async def admin(make_key: MakeKey, clean_db: None) -> dict[str, str]:
    return {"authorization": f"Bearer {await make_key('admin')}"}


async def reject(client: AsyncClient, secret: str, **overrides: object) -> str:
    body = body_of(call_event(**overrides))
    response = await client.post(
        "/v1/webhooks/generic", content=body, headers=signed_headers(secret, body)
    )
    assert response.status_code == 422
    inbound_id: str = response.json()["inbound_id"]
    return inbound_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/inbound"),
        ("GET", "/v1/inbound/x"),
        ("POST", "/v1/inbound/x/replay"),
    ],
)
async def test_operator_endpoints_need_an_admin_key(
    intake: AsyncClient, make_key: MakeKey, method: str, path: str
) -> None:
    writer = {"authorization": f"Bearer {await make_key('intake:write', 'internal')}"}
    assert (await intake.request(method, path)).status_code == 401
    bad = {"authorization": "Bearer rb_000000000000_" + "x" * 40}
    assert (await intake.request(method, path, headers=bad)).status_code == 401
    assert (await intake.request(method, path, headers=writer)).status_code == 403


async def test_list_filters_pages_and_shows_no_body_or_personal_data(
    intake: AsyncClient, webhook_secret: str, admin: dict[str, str]
) -> None:
    rejected = [await reject(intake, webhook_secret, status="ringing") for _ in range(3)]
    await post_call(intake, webhook_secret)

    first = await intake.get(
        "/v1/inbound", params={"status": "rejected", "limit": 2}, headers=admin
    )
    assert first.status_code == 200
    page = first.json()
    assert [item["id"] for item in page["items"]] == rejected[::-1][:2]
    assert page["next_cursor"]
    second = await intake.get(
        "/v1/inbound",
        params={"status": "rejected", "limit": 2, "cursor": page["next_cursor"]},
        headers=admin,
    )
    assert [item["id"] for item in second.json()["items"]] == [rejected[0]]
    assert second.json()["next_cursor"] is None
    item = page["items"][0]
    assert not {"body", "phone", "email", "headers"} & set(item)
    assert item["reason"]
    assert item["body_bytes"] > 0
    everything = await intake.get("/v1/inbound", params={"provider": "generic"}, headers=admin)
    assert len(everything.json()["items"]) == 4
    assert (await intake.get("/v1/inbound", params={"provider": "twilio"}, headers=admin)).json()[
        "items"
    ] == []


async def test_list_rejects_bad_parameters(intake: AsyncClient, admin: dict[str, str]) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"status": "lost"}, {"cursor": "!!"}):
        response = await intake.get("/v1/inbound", params=params, headers=admin)
        assert response.status_code in (400, 422), params
        assert response.headers["content-type"] == "application/problem+json"


async def test_detail_shows_the_body(
    intake: AsyncClient, webhook_secret: str, admin: dict[str, str]
) -> None:
    inbound_id = await reject(intake, webhook_secret, status="ringing")
    response = await intake.get(f"/v1/inbound/{inbound_id}", headers=admin)
    assert response.status_code == 200
    detail = response.json()
    assert '"status":"ringing"' in detail["body"]
    assert detail["headers"]["content-type"] == "application/json"
    assert "webhook-signature" not in detail["headers"]
    assert (await intake.get("/v1/inbound/nope", headers=admin)).status_code == 404


async def test_replay_records_a_record_that_now_parses(
    intake: AsyncClient,
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Forwards,
) -> None:
    # Rejected by an older version of the code; today's parser accepts it.
    body = body_of(call_event(call_id="call-replayed"))
    async with sessions() as session:
        inbound_id = await repository.insert_inbound(
            session,
            {
                "provider": "generic",
                "kind": "call",
                "status": "rejected",
                "reason": "older code refused this",
                "content_type": "application/json",
                "headers": {"content-type": "application/json"},
                "body": body,
                "summary": {},
            },
        )
        await session.commit()

    response = await intake.post(f"/v1/inbound/{inbound_id}/replay", headers=admin)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "replayed"
    assert result["result"]["status"] == "accepted"
    assert [row.destination for row in await outbox_rows()] == ["history", "callback"]
    detail = (await intake.get(f"/v1/inbound/{inbound_id}", headers=admin)).json()
    assert detail["status"] == "replayed"
    assert detail["summary"]["replayed_as"] == result["result"]["id"]
    again = await intake.post(f"/v1/inbound/{inbound_id}/replay", headers=admin)
    assert again.status_code == 409


async def test_replay_still_dedupes(
    intake: AsyncClient,
    webhook_secret: str,
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
    outbox_rows: Forwards,
) -> None:
    event = call_event(call_id="call-known")
    await post_call(intake, webhook_secret, **event)
    async with sessions() as session:
        inbound_id = await repository.insert_inbound(
            session,
            {
                "provider": "generic",
                "kind": "call",
                "status": "rejected",
                "reason": "x",
                "content_type": "application/json",
                "headers": {},
                "body": body_of(event),
                "summary": {},
            },
        )
        await session.commit()
    response = await intake.post(f"/v1/inbound/{inbound_id}/replay", headers=admin)
    assert response.json()["result"]["status"] == "duplicate"
    assert len(await outbox_rows()) == 2


async def test_replay_of_what_still_does_not_parse_is_422(
    intake: AsyncClient, webhook_secret: str, admin: dict[str, str], inbound_rows: Rows
) -> None:
    inbound_id = await reject(intake, webhook_secret, status="ringing")
    response = await intake.post(f"/v1/inbound/{inbound_id}/replay", headers=admin)
    assert response.status_code == 422
    assert "status" in response.json()["detail"]
    [row] = await inbound_rows()
    assert row.status == "rejected"


async def test_replay_of_an_accepted_record_is_409(
    intake: AsyncClient, webhook_secret: str, admin: dict[str, str]
) -> None:
    accepted = (await post_call(intake, webhook_secret)).json()["id"]
    response = await intake.post(f"/v1/inbound/{accepted}/replay", headers=admin)
    assert response.status_code == 409
    assert (await intake.post("/v1/inbound/nope/replay", headers=admin)).status_code == 404


async def test_the_openapi_document_names_every_endpoint(intake: AsyncClient) -> None:
    paths = (await intake.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/webhooks/generic",
        "/v1/webhooks/twilio",
        "/v1/webhooks/cti/{token}",
        "/v1/contact-requests",
        "/v1/inbound",
        "/v1/inbound/{inbound_id}",
        "/v1/inbound/{inbound_id}/replay",
        "/v1/erasures",
        "/v1/self/{token}",
    } <= set(paths)
