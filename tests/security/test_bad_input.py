"""Hostile and absurd input to every JSON write endpoint: always the right 4xx, never a 500.

A refusal leaves every service table as it was; accepted free text comes back verbatim.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import Response

from shared.ids import new_id
from tests.security.conftest import Clients, RowCounts

Counts = Callable[[], Awaitable[RowCounts]]
PHONE = "+358401234567"


@pytest.fixture
def clients(module_clients: Clients) -> Clients:
    # One set of apps for the module: each test compares counts before and after, not totals.
    return module_clients


def contact_body() -> dict[str, Any]:
    return {
        "channel": "web",
        "name": "Maija Meikäläinen",
        "phone": PHONE,
        "email": "maija@example.fi",
        "message": "Soittakaa, kiitos.",
    }


def callback_body() -> dict[str, Any]:
    return {
        "request_id": f"bad-input-{secrets.token_hex(6)}",
        "source": "contact_request",
        "channel": "web",
        "first_contact_at": datetime.now(UTC).isoformat(),
        # A number of its own: a second request for an open callback's number merges into it.
        "phone": f"+35840{secrets.randbelow(10**7):07d}",
        "name": "Maija",
        "message": "Soittakaa",
        "queue": "billing",
    }


def capacity_body() -> dict[str, Any]:
    return {
        "timezone": "Europe/Helsinki",
        "slot_minutes": 15,
        "callbacks_per_agent_per_slot": 1,
        "default_agents": 2,
        "closed_dates": [],
    }


def claim_body() -> dict[str, Any]:
    return {"agent_id": "agent-1"}


def event_body() -> dict[str, Any]:
    return {
        "id": new_id(),
        "occurred_at": "2026-11-24T12:00:00Z",
        "channel": "phone",
        "direction": "inbound",
        "type": "missed_call",
        "customer": {"phone": PHONE, "name": "Maija"},
        "summary": "Missed call",
        "data": {"queue": "billing"},
    }


def batch_body() -> dict[str, Any]:
    return {"events": [event_body()]}


# name -> (service, method, path, a valid body)
ENDPOINTS: dict[str, tuple[str, str, str, Callable[[], dict[str, Any]]]] = {
    "contact-request": ("intake", "POST", "/v1/contact-requests", contact_body),
    "callback": ("callback", "POST", "/v1/callbacks", callback_body),
    "capacity": ("callback", "PUT", "/v1/capacity", capacity_body),
    "claim": ("callback", "POST", "/v1/queue/claim", claim_body),
    "event": ("history", "POST", "/v1/events", event_body),
    "batch": ("history", "POST", "/v1/events:batch", batch_body),
}
# Free-text fields of each body, as paths into the document.
TEXT_FIELDS: dict[str, list[tuple[str | int, ...]]] = {
    "contact-request": [("name",), ("message",)],
    "callback": [("name",), ("message",), ("queue",), ("request_id",)],
    "capacity": [("timezone",)],
    "claim": [("agent_id",)],
    "event": [("summary",), ("customer", "name"), ("data", "queue"), ("id",)],
    "batch": [("events", 0, "summary"), ("events", 0, "customer", "name")],
}
# Number fields (and booleans, which JSON numbers must not pass for).
NUMBER_FIELDS: dict[str, list[tuple[str | int, ...]]] = {
    "contact-request": [("consent", "sms")],
    "callback": [("consent", "email")],
    "capacity": [("slot_minutes",), ("callbacks_per_agent_per_slot",), ("default_agents",)],
    "event": [("data", "queue")],
}
DATE_FIELDS: dict[str, list[tuple[str | int, ...]]] = {
    "callback": [("first_contact_at",)],
    "event": [("occurred_at",)],
    "batch": [("events", 0, "occurred_at")],
}


def with_value(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> Any:
    target: Any = document
    for part in path[:-1]:
        target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
    target[path[-1]] = value
    return document


def problem(answer: Response, *statuses: int) -> None:
    assert answer.status_code in statuses, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"] == "application/problem+json", answer.headers
    assert answer.json()["status"] == answer.status_code


async def send(
    clients: Clients, endpoint: str, headers: dict[str, str], content: bytes, **extra: str
) -> Response:
    service, method, path, _ = ENDPOINTS[endpoint]
    return await clients[service].request(
        method,
        path,
        content=content,
        headers={"content-type": "application/json", **headers, **extra},
    )


async def refused(
    clients: Clients,
    row_counts: Counts,
    endpoint: str,
    admin: dict[str, str],
    content: bytes,
    *statuses: int,
    **headers: str,
) -> Response:
    before = await row_counts()
    answer = await send(clients, endpoint, {**admin, **headers}, content)
    problem(answer, *statuses)
    assert await row_counts() == before, "a refused request changed the database"
    return answer


def raw(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


ALL = pytest.mark.parametrize("endpoint", list(ENDPOINTS))


@ALL
async def test_the_valid_body_is_accepted(
    endpoint: str, clients: Clients, admin: dict[str, str]
) -> None:
    # The baseline every refusal below is measured against.
    answer = await send(clients, endpoint, admin, raw(ENDPOINTS[endpoint][3]()))
    assert answer.status_code in {200, 201, 202, 204}, answer.text


@ALL
async def test_an_oversized_body_is_413(
    endpoint: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    service, _, _, valid = ENDPOINTS[endpoint]
    settings: Any = clients[service]._transport.app.state.settings  # type: ignore[attr-defined]
    limit = (
        settings.history_batch_body_limit_bytes
        if endpoint == "batch"
        else settings.body_limit_bytes
    )
    body = valid()
    text_field = TEXT_FIELDS[endpoint][0]
    content = raw(with_value(body, text_field, "x" * (limit + 1)))
    await refused(clients, row_counts, endpoint, admin, content, 413)


@ALL
async def test_json_nested_ten_thousand_deep_is_a_4xx(
    endpoint: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    depth = 10_000
    for content in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        await refused(clients, row_counts, endpoint, admin, content, 400, 422)


@ALL
async def test_a_huge_array_is_refused(
    endpoint: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    content = b"[" + b",".join([b"0"] * 30_000) + b"]"  # 60 KB: under the body limit
    await refused(clients, row_counts, endpoint, admin, content, 400, 422)


async def test_more_than_the_batch_limit_of_events_is_422(
    clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    content = raw({"events": [event_body() for _ in range(501)]})
    await refused(clients, row_counts, "batch", admin, content, 422)


async def test_a_capacity_plan_with_too_many_closed_dates_is_422(
    clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    days = [(datetime(2027, 1, 1) + timedelta(days=i)).date().isoformat() for i in range(401)]
    content = raw({**capacity_body(), "closed_dates": days})
    await refused(clients, row_counts, "capacity", admin, content, 422)


@ALL
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ],
)
async def test_a_body_that_is_not_json_media_is_415(
    endpoint: str, content_type: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    content = raw(ENDPOINTS[endpoint][3]())
    answer = await refused(
        clients, row_counts, endpoint, {**admin, "content-type": content_type}, content, 415
    )
    assert "json" in answer.json()["detail"].lower()


@ALL
async def test_invalid_utf8_is_a_4xx(
    endpoint: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    body = ENDPOINTS[endpoint][3]()
    marker = "MARKER-FOR-BYTES"
    content = raw(with_value(body, TEXT_FIELDS[endpoint][0], marker))
    for bad in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
        await refused(
            clients, row_counts, endpoint, admin, content.replace(marker.encode(), bad), 400, 422
        )


CONTROL_STRINGS = [
    "a\x00b",
    "nul at end\x00",
    "bell\x07 esc\x1b[31m",
    "del\x7f",
    "c1\x85",
    "\\u0000",
]
CONTROL_CASES = [(endpoint, value) for endpoint in ENDPOINTS for value in CONTROL_STRINGS]


@pytest.mark.parametrize(("endpoint", "value"), CONTROL_CASES, ids=repr)
async def test_control_characters_are_refused_or_stored_safely(
    endpoint: str, value: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    for field in TEXT_FIELDS[endpoint]:
        before = await row_counts()
        content = raw(with_value(ENDPOINTS[endpoint][3](), field, value))
        answer = await send(clients, endpoint, admin, content)
        assert answer.status_code < 500, (field, answer.status_code, answer.text[:300])
        if answer.status_code >= 400:
            problem(answer, 400, 422)
            assert await row_counts() == before, field


NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "-0", "1e-400", str(10**40), "-1"]
NUMBER_CASES = [(endpoint, number) for endpoint in NUMBER_FIELDS for number in NUMBERS]


@pytest.mark.parametrize(("endpoint", "number"), NUMBER_CASES)
async def test_numbers_of_every_shape_never_cause_a_500(
    endpoint: str, number: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    for field in NUMBER_FIELDS[endpoint]:
        marker = "NUMBER-MARKER"
        content = raw(with_value(ENDPOINTS[endpoint][3](), field, marker))
        content = content.replace(f'"{marker}"'.encode(), number.encode())
        before = await row_counts()
        answer = await send(clients, endpoint, admin, content)
        assert answer.status_code < 500, (field, answer.status_code, answer.text[:300])
        if answer.status_code >= 400:
            problem(answer, 400, 422)
            assert await row_counts() == before, field
        if endpoint == "capacity" and number not in {"-0", "1e-400"}:
            # Capacity figures are bounded integers: none of these is one (-0 and 1e-400 are 0).
            assert answer.status_code == 422, (field, number)


DATES = [
    # Valid for pydantic, but outside datetime's range once converted to UTC.
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:60Z",
    "9999-12-31T23:59:59Z",
    "2026-02-30T12:00:00Z",
    "2026-11-24T25:00:00Z",
    "2026-11-24T12:00:00",  # naive: no time zone
    "1e10",
    "",
]


@pytest.mark.parametrize("endpoint", list(DATE_FIELDS))
@pytest.mark.parametrize("value", DATES)
async def test_absurd_dates_are_refused_never_a_500(
    endpoint: str, value: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    for field in DATE_FIELDS[endpoint]:
        before = await row_counts()
        content = raw(with_value(ENDPOINTS[endpoint][3](), field, value))
        answer = await send(clients, endpoint, admin, content)
        assert answer.status_code < 500, (field, answer.status_code, answer.text[:300])
        if answer.status_code >= 400:
            problem(answer, 400, 422)
            assert await row_counts() == before, field


_NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
RANGE_QUERIES: list[tuple[str, str, dict[str, str]]] = [
    # (service, path, query) each of which must be refused with a 4xx
    ("callback", "/v1/slots", {"from": "2026-11-25T00:00:00Z", "to": "2026-11-24T00:00:00Z"}),
    ("callback", "/v1/slots", {"from": "2026-01-01T00:00:00Z", "to": "2126-01-01T00:00:00Z"}),
    ("callback", "/v1/slots", {"from": "0000-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("callback", "/v1/slots", {"from": "garbage", "to": "2026-01-01T00:00:00Z"}),
    ("history", "/v1/stats", {"from": "2026-11-25T00:00:00Z", "to": "2026-11-24T00:00:00Z"}),
    ("history", "/v1/stats", {"from": "1926-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("history", "/v1/stats", {"from": "2026-11-24T00:00:00", "to": "2026-11-25T00:00:00"}),
    ("history", "/v1/stats", {"from": "2026-11-24T00:00:00Z", "to": "9999-12-31T23:59:59Z"}),
    *(
        (service, path, {"limit": limit})
        for service, path in (
            ("callback", "/v1/callbacks"),
            ("callback", "/v1/notifications"),
            ("intake", "/v1/inbound"),
            ("history", "/v1/customers/{customer}/timeline"),
            ("history", "/v1/customers/{customer}/merges"),
        )
        for limit in ("0", "501", "-1", "1e3", "NaN", str(2**64))
    ),
    *(
        (service, path, {"cursor": cursor})
        for service, path in (
            ("callback", "/v1/callbacks"),
            ("callback", "/v1/notifications"),
            ("intake", "/v1/inbound"),
            ("history", "/v1/customers/{customer}/timeline"),
            ("history", "/v1/customers/{customer}/merges"),
        )
        for cursor in ("garbage", "!!!", "'; DROP TABLE x; --", "%00", "A" * 513)
    ),
]


@pytest.mark.parametrize(("service", "path", "query"), RANGE_QUERIES)
async def test_absurd_ranges_and_pages_are_a_4xx(
    service: str, path: str, query: dict[str, str], clients: Clients, admin: dict[str, str]
) -> None:
    customer = None
    if "{customer}" in path:
        stored = await clients["history"].post("/v1/events", json=event_body(), headers=admin)
        assert stored.status_code == 201, stored.text
        customer = stored.json()["customer_id"]
    answer = await clients[service].get(path.format(customer=customer), params=query, headers=admin)
    problem(answer, 400, 422)


INJECTIONS = [
    "'; DROP TABLE x; --",
    "<script>alert(1)</script>",
    '" OR 1=1 --',
    "${jndi:ldap://x/a}",
    "{{7*7}}",
]


async def _stored_text(
    clients: Clients, admin: dict[str, str], endpoint: str, answer: Response
) -> dict[str, Any]:
    """The stored record the answer names, as the API gives it back."""
    if endpoint == "callback":
        detail = await clients["callback"].get(
            f"/v1/callbacks/{answer.json()['id']}", headers=admin
        )
        return dict(detail.json())
    if endpoint == "event":
        event = answer.json()
        page = await clients["history"].get(
            f"/v1/customers/{event['customer_id']}/timeline", headers=admin
        )
        [item] = [i for i in page.json()["items"] if i["id"] == event["id"]]
        return dict(item)
    # Intake keeps the request as received; the operator's view gives the body back.
    detail = await clients["intake"].get(f"/v1/inbound/{answer.json()['id']}", headers=admin)
    return dict(json.loads(detail.json()["body"]))


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    ("endpoint", "field", "read_back"),
    [
        ("contact-request", ("name",), ("name",)),
        ("contact-request", ("message",), ("message",)),
        ("callback", ("name",), ("name",)),
        ("callback", ("message",), ("message",)),
        ("event", ("summary",), ("summary",)),
        ("event", ("data", "queue"), ("data", "queue")),
    ],
)
async def test_injection_strings_are_stored_verbatim_and_returned_as_json_text(
    endpoint: str,
    field: tuple[str, ...],
    read_back: tuple[str, ...],
    value: str,
    clients: Clients,
    admin: dict[str, str],
) -> None:
    content = raw(with_value(ENDPOINTS[endpoint][3](), field, value))
    answer = await send(clients, endpoint, admin, content)
    assert answer.status_code in {200, 201, 202}, answer.text
    stored: Any = await _stored_text(clients, admin, endpoint, answer)
    for part in read_back:
        stored = stored[part]
    assert stored == value


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_strings_in_structured_fields_are_refused(
    value: str, clients: Clients, admin: dict[str, str], row_counts: Counts
) -> None:
    for endpoint, field in (
        ("capacity", ("timezone",)),
        ("claim", ("agent_id",)),
        ("contact-request", ("phone",)),
        ("callback", ("phone",)),
    ):
        content = raw(with_value(ENDPOINTS[endpoint][3](), field, value))
        await refused(clients, row_counts, endpoint, admin, content, 422)


async def test_sql_in_query_parameters_is_just_text(
    clients: Clients, admin: dict[str, str]
) -> None:
    for service, path, params in (
        ("callback", "/v1/callbacks", {"phone": "'; DROP TABLE x; --"}),
        ("callback", "/v1/callbacks", {"agent_id": "' OR '1'='1"}),
        ("history", "/v1/customers", {"phone": "' OR '1'='1"}),
        ("intake", "/v1/inbound", {"provider": "x' OR 1=1 --"}),
    ):
        answer = await clients[service].get(path, params=params, headers=admin)
        assert answer.status_code < 500, answer.text
        if answer.status_code == 200:
            assert answer.json()["items"] == []
