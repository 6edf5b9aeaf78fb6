"""Recording events: idempotency, batches, auth and input checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient

from services.history.app import create_app
from services.history.settings import HistorySettings
from tests.conftest import serve_asgi
from tests.history.conftest import make_event


async def _timeline(client: AsyncClient, reader: dict[str, str], customer_id: str) -> Any:
    response = await client.get(f"/v1/customers/{customer_id}/timeline", headers=reader)
    assert response.status_code == 200, response.text
    return response.json()


async def test_stored_event_appears_on_the_timeline(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    body = make_event(
        subject={"kind": "call", "id": "c-1"},
        actor={"kind": "customer"},
        summary="Missed call from the billing line",
        data={"queue": "billing"},
    )
    response = await client.post("/v1/events", json=body, headers=writer)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["id"] == body["id"]
    assert stored["occurred_at"] == "2026-11-24T12:00:00Z"
    assert stored["received_at"]

    page = await _timeline(client, reader, stored["customer_id"])
    assert page["next_cursor"] is None
    (item,) = page["items"]
    assert item == stored
    assert item["subject"] == {"kind": "call", "id": "c-1"}
    assert item["actor"] == {"kind": "customer", "id": None}
    assert item["data"] == {"queue": "billing"}
    assert item["summary"] == "Missed call from the billing line"


async def test_repeat_returns_the_first_result_and_stores_once(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    body = make_event(summary="first")
    first = await client.post("/v1/events", json=body, headers=writer)
    assert first.status_code == 201
    again = await client.post("/v1/events", json=body, headers=writer)
    assert again.status_code == 200
    assert again.json() == first.json()
    # A repeat carrying a different body is still the same event: the stored one answers.
    changed = {**body, "summary": "second", "customer": {"phone": "+358409999999"}}
    third = await client.post("/v1/events", json=changed, headers=writer)
    assert third.status_code == 200
    assert third.json() == first.json()

    page = await _timeline(client, reader, first.json()["customer_id"])
    assert [item["id"] for item in page["items"]] == [body["id"]]
    # The repeat's other number was not attached to anyone.
    lookup = await client.get("/v1/customers", params={"phone": "+358409999999"}, headers=reader)
    assert lookup.json()["items"] == []
    profile = await client.get(f"/v1/customers/{first.json()['customer_id']}", headers=reader)
    assert profile.json()["counts"] == {"missed_call": 1}


async def test_internal_key_may_write(
    client: AsyncClient, internal_key: str, reader: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/events", json=make_event(), headers={"Authorization": f"Bearer {internal_key}"}
    )
    assert response.status_code == 201


async def test_batch_answers_per_item_in_order(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    known = make_event(occurred_at="2026-11-24T08:00:00Z")
    assert (await client.post("/v1/events", json=known, headers=writer)).status_code == 201
    fresh = [make_event(occurred_at=f"2026-11-24T09:0{i}:00Z") for i in range(3)]
    batch = [fresh[0], known, fresh[1], fresh[2], fresh[1]]

    response = await client.post("/v1/events:batch", json={"events": batch}, headers=writer)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["id"], i["status"]) for i in items] == [
        (fresh[0]["id"], "created"),
        (known["id"], "duplicate"),
        (fresh[1]["id"], "created"),
        (fresh[2]["id"], "created"),
        (fresh[1]["id"], "duplicate"),
    ]
    customer_ids = {i["event"]["customer_id"] for i in items}
    assert len(customer_ids) == 1
    page = await _timeline(client, reader, customer_ids.pop())
    assert len(page["items"]) == 4

    again = await client.post("/v1/events:batch", json={"events": batch}, headers=writer)
    assert {i["status"] for i in again.json()["items"]} == {"duplicate"}


async def test_batch_is_bounded(
    clean_db: None,
    settings_kwargs: dict[str, Any],
    writer: dict[str, str],
    reader: dict[str, str],
) -> None:
    # The batch route allows more than the default 64 KiB body limit: 500 events fit.
    async for client in serve_asgi(create_app(HistorySettings(**settings_kwargs))):
        empty = await client.post("/v1/events:batch", json={"events": []}, headers=writer)
        assert empty.status_code == 422
        events = [make_event(summary="") for _ in range(501)]
        too_many = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
        assert too_many.status_code == 422
        assert too_many.json()["errors"][0]["loc"] == ["body", "events"]

        full = await client.post("/v1/events:batch", json={"events": events[:500]}, headers=writer)
        assert full.status_code == 200, full.text
        assert len(full.json()["items"]) == 500
        customer_id = full.json()["items"][0]["event"]["customer_id"]
        timeline = await client.get(
            f"/v1/customers/{customer_id}/timeline", params={"limit": 500}, headers=reader
        )
        assert len(timeline.json()["items"]) == 500


async def test_body_over_the_limit_is_413(client: AsyncClient, writer: dict[str, str]) -> None:
    events = [make_event(summary="x" * 400) for _ in range(200)]
    # One event may not be as large as a batch: the raised limit is the batch route's only.
    single = make_event(data={"blob": "x" * 70_000})
    response = await client.post("/v1/events", json=single, headers=writer)
    assert response.status_code == 413
    response = await client.post("/v1/events:batch", json={"events": events * 20}, headers=writer)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_one_bad_item_rejects_the_batch_naming_it(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    good = make_event()
    bad = make_event(type="coffee_break")
    response = await client.post("/v1/events:batch", json={"events": [good, bad]}, headers=writer)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    locs = [e["loc"] for e in response.json()["errors"]]
    assert any(loc[:3] == ["body", "events", 1] for loc in locs)
    lookup = await client.get("/v1/customers", params={"phone": "+358401234567"}, headers=reader)
    assert lookup.json()["items"] == []


async def test_without_key_401_and_wrong_scope_403(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]], reader: dict[str, str]
) -> None:
    anonymous = await client.post("/v1/events", json=make_event())
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    bogus = await client.post(
        "/v1/events", json=make_event(), headers={"Authorization": "Bearer rb_nope_nope"}
    )
    assert bogus.status_code == 401

    assert (await client.post("/v1/events", json=make_event(), headers=reader)).status_code == 403
    callbacks = {"Authorization": f"Bearer {await make_key('callbacks:read')}"}
    assert (
        await client.get("/v1/customers?phone=0401234567", headers=callbacks)
    ).status_code == 403
    assert (await client.get("/v1/customers?phone=0401234567")).status_code == 401


async def test_non_json_body_is_415(client: AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post(
        "/v1/events",
        content=b"id=1&type=note",
        headers={**writer, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["status"] == 415


async def test_bad_fields_are_422_problems(client: AsyncClient, writer: dict[str, str]) -> None:
    cases: list[dict[str, Any]] = [
        make_event(type=42),
        make_event(type="coffee_break"),
        make_event(channel="pigeon"),
        make_event(occurred_at="yesterday"),
        make_event(customer={"phone": "+358401234567", "shoe_size": 42}),
        make_event(id=""),
        make_event(summary="x" * 501),
    ]
    for body in cases:
        response = await client.post("/v1/events", json=body, headers=writer)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["status"] == 422
        assert problem["errors"], body


async def test_text_postgres_cannot_store_is_422_not_500(
    client: AsyncClient, writer: dict[str, str]
) -> None:
    for body in (
        make_event(summary="nul \u0000 here"),
        make_event(data={"note": "a\u0000b"}),
        make_event(data={"k\u0000": 1}),
    ):
        response = await client.post("/v1/events", json=body, headers=writer)
        assert response.status_code == 422, response.text
        assert response.json()["errors"]
    nan = b'{"id": "e-nan", "occurred_at": "2026-11-24T12:00:00Z", "channel": "phone",'
    nan += b' "direction": "inbound", "type": "note", "customer": {}, "data": {"x": NaN}}'
    response = await client.post(
        "/v1/events", content=nan, headers={**writer, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


async def test_extension_types_are_accepted(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    body = make_event(type="x-crm.ticket_opened", direction="internal", channel="web")
    response = await client.post("/v1/events", json=body, headers=writer)
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "x-crm.ticket_opened"
