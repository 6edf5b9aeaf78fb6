"""Identity resolution: notations, linking, merging, and concurrent first contacts."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx import AsyncClient

from tests.history.conftest import make_event


async def _post(client: AsyncClient, writer: dict[str, str], **fields: Any) -> Any:
    response = await client.post("/v1/events", json=make_event(**fields), headers=writer)
    assert response.status_code == 201, response.text
    return response.json()


async def _lookup(client: AsyncClient, reader: dict[str, str], **params: str) -> list[Any]:
    response = await client.get("/v1/customers", params=params, headers=reader)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[Any] = response.json()["items"]
    return items


async def test_every_notation_of_a_number_is_one_customer(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    notations = ["040 123 4567", "+358 40 1234567", "0401234567", "040/1234567"]
    stored = [await _post(client, writer, customer={"phone": n}) for n in notations]
    assert len({s["customer_id"] for s in stored}) == 1

    for notation in [*notations, "00358401234567"]:
        (customer,) = await _lookup(client, reader, phone=notation)
        assert customer["id"] == stored[0]["customer_id"]
        assert customer["phones"] == ["+358401234567"]


async def test_unknown_number_finds_nobody_and_nonsense_is_422(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    await _post(client, writer, customer={"phone": "0401234567"})
    assert await _lookup(client, reader, phone="0409876543") == []
    assert await _lookup(client, reader, email="nobody@example.fi") == []
    for params in ({"phone": "not a number"}, {"email": "not-an-email"}, {}):
        response = await client.get("/v1/customers", params=params, headers=reader)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_phone_and_email_in_one_event_link_them(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    first = await _post(client, writer, customer={"phone": "040 123 4567"})
    linked = await _post(
        client,
        writer,
        channel="web",
        type="contact_request",
        customer={"phone": "0401234567", "email": "Maija@Example.FI", "name": "Maija"},
    )
    assert linked["customer_id"] == first["customer_id"]

    (by_email,) = await _lookup(client, reader, email="maija@example.fi")
    assert by_email["id"] == first["customer_id"]
    assert by_email["emails"] == ["maija@example.fi"]
    assert by_email["phones"] == ["+358401234567"]
    assert by_email["name"] == "Maija"

    # An email-only message now lands on the same customer.
    later = await _post(
        client, writer, channel="email", type="note", customer={"email": "MAIJA@example.fi"}
    )
    assert later["customer_id"] == first["customer_id"]


async def test_event_bridging_two_customers_merges_them(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    by_phone = await _post(
        client, writer, occurred_at="2026-11-20T10:00:00Z", customer={"phone": "0401234567"}
    )
    by_email = await _post(
        client,
        writer,
        channel="email",
        type="contact_request",
        occurred_at="2026-11-21T10:00:00Z",
        customer={"email": "maija@example.fi", "name": "Maija"},
    )
    older, newer = by_phone["customer_id"], by_email["customer_id"]
    assert older != newer

    bridge = await _post(
        client,
        writer,
        channel="web",
        type="contact_request",
        occurred_at="2026-11-22T10:00:00Z",
        customer={"phone": "+358401234567", "email": "maija@example.fi"},
    )
    assert bridge["customer_id"] == older  # the older record survives

    (customer,) = await _lookup(client, reader, email="maija@example.fi")
    assert customer["id"] == older
    assert customer["phones"] == ["+358401234567"]
    assert customer["emails"] == ["maija@example.fi"]
    assert customer["name"] == "Maija"  # learned from the merged record
    assert [c["id"] for c in await _lookup(client, reader, phone="0401234567")] == [older]

    timeline = await client.get(f"/v1/customers/{older}/timeline", headers=reader)
    items = timeline.json()["items"]
    ids = {item["id"] for item in items}
    assert {by_phone["id"], by_email["id"], bridge["id"]} <= ids
    assert all(item["customer_id"] == older for item in items)
    (merged,) = [item for item in items if item["type"] == "customer_merged"]
    assert merged["subject"] == {"kind": "customer", "id": newer}
    assert merged["data"]["survivor_id"] == older
    assert merged["data"]["cause_event_id"] == bridge["id"]

    # The merged-away id still answers, with the survivor.
    old_profile = await client.get(f"/v1/customers/{newer}", headers=reader)
    assert old_profile.status_code == 200
    assert old_profile.json()["id"] == older
    assert old_profile.headers["content-location"] == f"/v1/customers/{older}"
    assert old_profile.json()["counts"] == {
        "contact_request": 2,
        "customer_merged": 1,
        "missed_call": 1,
    }
    old_timeline = await client.get(f"/v1/customers/{newer}/timeline", headers=reader)
    assert old_timeline.json()["items"] == items

    # Merges can be listed from the timeline.
    only_merges = await client.get(
        f"/v1/customers/{older}/timeline", params={"type": "customer_merged"}, headers=reader
    )
    assert [i["id"] for i in only_merges.json()["items"]] == [merged["id"]]


async def test_merge_chain_resolves_to_the_last_survivor(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    a = (await _post(client, writer, customer={"phone": "0401111111"}))["customer_id"]
    b = (await _post(client, writer, customer={"email": "b@example.fi"}))["customer_id"]
    c = (await _post(client, writer, customer={"email": "c@example.fi"}))["customer_id"]
    await _post(client, writer, customer={"email": "b@example.fi", "external_id": "crm-9"})
    # b into a, then a (carrying b) meets c.
    await _post(client, writer, customer={"phone": "0401111111", "email": "b@example.fi"})
    await _post(client, writer, customer={"phone": "0401111111", "email": "c@example.fi"})
    for old in (a, b, c):
        profile = await client.get(f"/v1/customers/{old}", headers=reader)
        assert profile.json()["id"] == a
    profile = (await client.get(f"/v1/customers/{a}", headers=reader)).json()
    assert sorted(profile["emails"]) == ["b@example.fi", "c@example.fi"]
    assert profile["external_id"] == "crm-9"
    assert profile["counts"]["customer_merged"] == 2


async def test_concurrent_first_events_for_a_new_number_make_one_customer(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    notations = ["040 765 4321", "+358 40 7654321", "0407654321", "040/7654321"]
    bodies = [make_event(customer={"phone": notations[i % 4]}) for i in range(20)]
    responses = await asyncio.gather(
        *(client.post("/v1/events", json=body, headers=writer) for body in bodies)
    )
    assert [r.status_code for r in responses] == [201] * 20
    assert len({r.json()["customer_id"] for r in responses}) == 1
    (customer,) = await _lookup(client, reader, phone="0407654321")
    timeline = await client.get(
        f"/v1/customers/{customer['id']}/timeline", params={"limit": 500}, headers=reader
    )
    assert len(timeline.json()["items"]) == 20


async def test_concurrent_repeats_of_one_event_store_it_once(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    body = make_event(customer={})  # anonymous: nothing but the event id to serialise on
    responses = await asyncio.gather(
        *(client.post("/v1/events", json=body, headers=writer) for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["customer_id"] for r in responses}) == 1


async def test_event_without_phone_or_email(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    withheld = [await _post(client, writer, customer={"phone": "anonymous"}) for _ in range(2)]
    # Each contact with no identity is kept, on an anonymous customer of its own.
    assert withheld[0]["customer_id"] != withheld[1]["customer_id"]
    profile = await client.get(f"/v1/customers/{withheld[0]['customer_id']}", headers=reader)
    assert profile.json()["phones"] == []
    assert profile.json()["counts"] == {"missed_call": 1}

    crm = [
        await _post(client, writer, type="note", customer={"external_id": "crm-42"})
        for _ in range(2)
    ]
    assert crm[0]["customer_id"] == crm[1]["customer_id"]
    # A later contact naming the external id and a phone joins them.
    joined = await _post(client, writer, customer={"external_id": "crm-42", "phone": "0405555555"})
    assert joined["customer_id"] == crm[0]["customer_id"]
    (found,) = await _lookup(client, reader, phone="0405555555")
    assert found["external_id"] == "crm-42"
