"""The timeline: newest first, keyset pages that hold still while events arrive, filters."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.history.app import create_app
from services.history.schemas import EventOut, EventPage
from shared.pagination import encode_cursor
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event

START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def _seed(client: AsyncClient, writer: dict[str, str], events: list[dict[str, Any]]) -> str:
    response = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
    assert response.status_code == 200, response.text
    customer_id: str = response.json()["items"][0]["event"]["customer_id"]
    return customer_id


async def _all_pages(
    client: AsyncClient, reader: dict[str, str], customer_id: str, **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/v1/customers/{customer_id}/timeline", params=query, headers=reader
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_pages_are_newest_first_without_gaps_or_duplicates(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    # Several events share a timestamp: the tie is broken by arrival, still newest first.
    events = [make_event(occurred_at=_at(i // 3), summary=f"e{i}") for i in range(23)]
    customer_id = await _seed(client, writer, events)

    pages = await _all_pages(client, reader, customer_id, limit=5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    seen = [item["id"] for page in pages for item in page]
    assert len(seen) == len(set(seen)) == 23
    # Same time: the later-arrived event comes first.
    by_time: dict[str, list[str]] = {}
    for e in events:
        by_time.setdefault(e["occurred_at"], []).append(e["id"])
    expected = [i for t in sorted(by_time, reverse=True) for i in reversed(by_time[t])]
    assert seen == expected


async def test_pages_hold_still_while_new_events_arrive(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    events = [make_event(occurred_at=_at(i)) for i in range(10)]
    customer_id = await _seed(client, writer, events)
    url = f"/v1/customers/{customer_id}/timeline"

    first = (await client.get(url, params={"limit": 4}, headers=reader)).json()
    # New contacts arrive between page fetches, including one at the same instant as the
    # last item shown.
    for minutes in (100, 101, 6):
        body = make_event(occurred_at=_at(minutes))
        assert (await client.post("/v1/events", json=body, headers=writer)).status_code == 201
    second = (
        await client.get(url, params={"limit": 4, "cursor": first["next_cursor"]}, headers=reader)
    ).json()
    third = (
        await client.get(url, params={"limit": 4, "cursor": second["next_cursor"]}, headers=reader)
    ).json()

    walked = [i["id"] for i in first["items"] + second["items"] + third["items"]]
    assert walked == [e["id"] for e in reversed(events)]
    assert third["next_cursor"] is None


async def test_filters_by_channel_type_and_before(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    events = [
        make_event(occurred_at=_at(0), channel="phone", type="missed_call"),
        make_event(
            occurred_at=_at(1), channel="sms", direction="outbound", type="notification_sent"
        ),
        make_event(occurred_at=_at(2), channel="phone", type="call_answered"),
        make_event(occurred_at=_at(3), channel="email", type="contact_request"),
        make_event(occurred_at=_at(4), channel="phone", type="missed_call"),
    ]
    customer_id = await _seed(client, writer, events)
    url = f"/v1/customers/{customer_id}/timeline"

    async def ids(**params: Any) -> list[str]:
        response = await client.get(url, params=params, headers=reader)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids(channel="phone") == [events[4]["id"], events[2]["id"], events[0]["id"]]
    assert await ids(type="missed_call") == [events[4]["id"], events[0]["id"]]
    assert await ids(channel="phone", type="call_answered") == [events[2]["id"]]
    assert await ids(before=_at(2)) == [events[1]["id"], events[0]["id"]]
    assert await ids(channel="chat") == []
    pages = await _all_pages(client, reader, customer_id, channel="phone", limit=1)
    assert [p[0]["id"] for p in pages] == [events[4]["id"], events[2]["id"], events[0]["id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 501},
        {"limit": 0},
        {"limit": "many"},
        {"channel": "pigeon"},
        {"type": "coffee_break"},
        {"before": "last tuesday"},
        {"before": "2026-11-01T08:00:00"},  # no offset: ambiguous
    ],
)
async def test_bad_parameters_are_422(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str], params: dict[str, Any]
) -> None:
    customer_id = await _seed(client, writer, [make_event()])
    response = await client.get(
        f"/v1/customers/{customer_id}/timeline", params=params, headers=reader
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        # The `occurred_at|seq` cursors of releases before the shared format: a client still
        # holding one is told to start again, never shown a wrong page.
        _b64("2026-11-01T08:00:00+00:00|1"),
        _b64("2026|1"),
        _b64("|"),
        _b64("2026-11-01T08:00:00|1"),
        _b64("2026-11-01T08:00:00+00:00|-1"),
        _b64(f"2026-11-01T08:00:00+00:00|{2**63}"),
        _b64("2026-11-01T08:00:00+00:00|1|2"),
        # The shared format with parts no timeline page ends on.
        encode_cursor("2026", 1),
        encode_cursor("2026-11-01T08:00:00", 1),  # no offset
        encode_cursor(START, -1),
        encode_cursor(START, 2**63),  # past bigint
        encode_cursor(START, "1e3"),
        encode_cursor(START, 1, 2),
        encode_cursor("0190b7a0-0000-7000-8000-000000000000"),  # another list's cursor
    ],
)
async def test_bad_cursor_is_400(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str], cursor: str
) -> None:
    customer_id = await _seed(client, writer, [make_event()])
    response = await client.get(
        f"/v1/customers/{customer_id}/timeline", params={"cursor": cursor}, headers=reader
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The cursor is not valid")


async def test_unknown_customer_is_404(client: AsyncClient, reader: dict[str, str]) -> None:
    for customer_id in ("0190b7a0-0000-7000-8000-000000000000", "not-an-id", "%00"):
        for suffix in ("", "/timeline"):
            response = await client.get(f"/v1/customers/{customer_id}{suffix}", headers=reader)
            assert response.status_code == 404, (customer_id, suffix)
            assert response.headers["content-type"] == "application/problem+json"


async def test_page_is_what_event_page_serialises(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str]
) -> None:
    # The timeline writes its JSON without the `EventPage` model: each item must be exactly
    # what the model makes of the stored event (the batch answer goes through `EventOut`).
    events = [
        make_event(
            occurred_at=f"2026-11-01T08:00:0{i}.{i * 120_000:06d}Z",
            subject={"kind": "callback", "id": f"cb-{i}"} if i % 2 else None,
            actor={"kind": "agent", "id": "agent-7"} if i == 2 else None,
            summary=f'Sähköposti {i} \u2603 "quoted" \\ tab\t',
            data={
                "queue": "billing",
                "nested": {"list": [1, 2.5, None, True, "ä"], "empty": {}},
                "big": 2**63 - 1,
                "small": 1e-7,
                "neg": -(2**63),
                "unicode": "\u00e4\u2603\U0001f600",
            },
        )
        for i in range(4)
    ]
    stored = await client.post("/v1/events:batch", json={"events": events}, headers=writer)
    assert stored.status_code == 200, stored.text
    expected = [item["event"] for item in reversed(stored.json()["items"])]
    customer_id = expected[0]["customer_id"]

    response = await client.get(
        f"/v1/customers/{customer_id}/timeline", params={"limit": 3}, headers=reader
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["items"] == expected[:3]
    assert list(body) == ["items", "next_cursor"]
    assert [list(item) for item in body["items"]] == [list(EventOut.model_fields)] * 3
    assert EventPage.model_validate_json(response.content).model_dump(mode="json") == body


async def test_a_page_costs_one_statement(
    clean_db: None, settings_kwargs: dict[str, Any], writer: dict[str, str], reader: dict[str, str]
) -> None:
    # The customer (through a merge) and the page come in one statement, with no BEGIN or
    # COMMIT around it: the round trips were most of a first page's time.
    app = create_app(history_settings(settings_kwargs))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async for client in serve_asgi(app):
        events = [make_event(occurred_at=_at(i)) for i in range(3)]
        url = f"/v1/customers/{await _seed(client, writer, events)}/timeline"
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", record)
        try:
            filtered: dict[str, str | int] = {"channel": "phone", "type": "missed_call", "limit": 2}
            for params in ({}, filtered):
                statements.clear()
                response = await client.get(url, params=params, headers=reader)
                assert response.status_code == 200, response.text
                assert len([s for s in statements if "api_keys" not in s]) == 1, statements
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", record)


async def test_a_merged_away_id_reads_the_end_of_its_merge_chain(
    client: AsyncClient, engine: AsyncEngine, writer: dict[str, str], reader: dict[str, str]
) -> None:
    # The one-statement page only reads the asked id's own events; a merged-away id is
    # followed to its survivor, however long the chain (merges keep it one hop long, but a
    # merge may race the read).
    ids = [
        await _seed(client, writer, [make_event(customer={"email": f"hop{i}@example.fi"})])
        for i in range(3)
    ]
    async with engine.begin() as conn:
        for loser, survivor in itertools.pairwise(ids):
            await conn.execute(
                text("UPDATE history.customers SET merged_into = :s WHERE id = :l"),
                {"s": survivor, "l": loser},
            )
            await conn.execute(
                text("UPDATE history.events SET customer_id = :s WHERE customer_id = :l"),
                {"s": survivor, "l": loser},
            )
    for asked in ids:
        response = await client.get(f"/v1/customers/{asked}/timeline", headers=reader)
        assert response.status_code == 200, response.text
        assert [item["customer_id"] for item in response.json()["items"]] == [ids[2]] * 3
