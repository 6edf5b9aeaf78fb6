"""Merges: a chain of three, every old id resolving, the list of merges."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from tests.history.conftest import make_event


async def _post(client: AsyncClient, writer: dict[str, str], at: str, **customer: str) -> Any:
    body = make_event(occurred_at=at, customer=customer)
    response = await client.post("/v1/events", json=body, headers=writer)
    assert response.status_code == 201, response.text
    return response.json()


async def test_chain_of_three_merges_resolves_every_old_id(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    # Oldest first: c, then b, a and d.
    c = (await _post(client, writer, "2026-11-01T08:00:00Z", email="c@example.fi"))["customer_id"]
    b = (await _post(client, writer, "2026-11-02T08:00:00Z", phone="0402222222"))["customer_id"]
    a = (await _post(client, writer, "2026-11-03T08:00:00Z", email="a@example.fi"))["customer_id"]
    d = (await _post(client, writer, "2026-11-04T08:00:00Z", email="d@example.fi"))["customer_id"]
    assert len({a, b, c, d}) == 4

    # a into b (b is older); then b, carrying a, into c; then d into c.
    first = await _post(
        client, writer, "2026-11-05T08:00:00Z", email="a@example.fi", phone="0402222222"
    )
    assert first["customer_id"] == b
    second = await _post(
        client, writer, "2026-11-06T08:00:00Z", phone="040 222 2222", email="c@example.fi"
    )
    assert second["customer_id"] == c
    third = await _post(
        client, writer, "2026-11-07T08:00:00Z", email="d@example.fi", phone="+358402222222"
    )
    assert third["customer_id"] == c

    for old in (a, b, c, d):
        profile = await client.get(f"/v1/customers/{old}", headers=reader)
        assert profile.status_code == 200
        assert profile.json()["id"] == c
        timeline = await client.get(f"/v1/customers/{old}/timeline", headers=reader)
        assert {e["customer_id"] for e in timeline.json()["items"]} == {c}
    for params in (
        {"email": "a@example.fi"},
        {"email": "d@example.fi"},
        {"phone": "0402222222"},
    ):
        (found,) = (await client.get("/v1/customers", params=params, headers=reader)).json()[
            "items"
        ]
        assert found["id"] == c

    profile = (await client.get(f"/v1/customers/{a}", headers=reader)).json()
    assert sorted(profile["merged_ids"]) == sorted([a, b, d])
    assert sorted(profile["emails"]) == ["a@example.fi", "c@example.fi", "d@example.fi"]
    assert profile["counts"]["customer_merged"] == 3
    assert profile["counts"]["missed_call"] == 7

    merges = await client.get(f"/v1/customers/{a}/merges", headers=reader)
    assert merges.status_code == 200
    items = merges.json()["items"]
    # Newest first; the first merge (a into b) moved to c with b's history.
    assert [(m["merged_customer_id"], m["survivor_id"]) for m in items] == [(d, c), (b, c), (a, b)]
    assert [m["cause_event_id"] for m in items] == [third["id"], second["id"], first["id"]]

    paged = await client.get(f"/v1/customers/{c}/merges", params={"limit": 2}, headers=reader)
    assert len(paged.json()["items"]) == 2
    rest = await client.get(
        f"/v1/customers/{c}/merges",
        params={"limit": 2, "cursor": paged.json()["next_cursor"]},
        headers=reader,
    )
    assert [m["merged_customer_id"] for m in rest.json()["items"]] == [a]
    assert rest.json()["next_cursor"] is None


async def test_merges_of_an_unmerged_customer_and_of_nobody(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    alone = (await _post(client, writer, "2026-11-01T08:00:00Z", phone="0403333333"))["customer_id"]
    response = await client.get(f"/v1/customers/{alone}/merges", headers=reader)
    assert response.json() == {"items": [], "next_cursor": None}
    missing = await client.get(
        "/v1/customers/0190b7a0-0000-7000-8000-000000000000/merges", headers=reader
    )
    assert missing.status_code == 404


async def test_one_batch_bridging_customers_merges_within_the_batch(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    events = [
        make_event(occurred_at="2026-11-01T08:00:00Z", customer={"phone": "0404444444"}),
        make_event(occurred_at="2026-11-01T09:00:00Z", customer={"email": "e@example.fi"}),
        make_event(
            occurred_at="2026-11-01T10:00:00Z",
            customer={"phone": "0404444444", "email": "e@example.fi"},
        ),
        make_event(occurred_at="2026-11-01T11:00:00Z", customer={"email": "e@example.fi"}),
    ]
    response = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    survivor = items[0]["event"]["customer_id"]
    # Every answer names the customer the event belongs to now, merges included.
    assert [i["event"]["customer_id"] for i in items] == [survivor] * 4
    profile = (await client.get(f"/v1/customers/{survivor}", headers=reader)).json()
    assert profile["counts"] == {"customer_merged": 1, "missed_call": 4}
    assert len(profile["merged_ids"]) == 1
