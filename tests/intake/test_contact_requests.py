"""Contact requests: validation, forwards, idempotency, abuse limits and the SMS allow-list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from httpx import AsyncClient
from hypothesis import given
from hypothesis import strategies as st

from services.intake.models import Inbound, IntakeOutbox
from services.intake.schemas import ContactRequestIn
from shared.jsonutil import dumps
from shared.phone import normalize

URL = "/v1/contact-requests"
Rows = Callable[[], Awaitable[list[Inbound]]]
Forwards = Callable[[], Awaitable[list[IntakeOutbox]]]
MakeKey = Callable[..., Awaitable[str]]


def request_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "web",
        "name": "Maija Meikäläinen",
        "phone": "040 123 4567",
        "email": "Maija@Example.FI",
        "language": "fi",
        "message": "Laskusta kysyttävää",
        "preferred": {"asap": True},
        "consent": {"sms": True, "email": True},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def auth(make_key: MakeKey, clean_db: None) -> dict[str, str]:
    return {"authorization": f"Bearer {await make_key('intake:write')}"}


async def test_a_contact_request_becomes_a_callback_and_a_timeline_entry(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    response = await intake.post(URL, json=request_body(), headers=auth)

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    [row] = await inbound_rows()
    assert (row.id, row.kind, row.phone, row.email) == (
        answer["id"],
        "contact_request",
        "+358401234567",
        "maija@example.fi",
    )
    history, callback = await outbox_rows()
    assert history.payload["type"] == "contact_request"
    assert history.payload["channel"] == "web"
    assert history.payload["customer"]["email"] == "maija@example.fi"
    assert history.payload["data"]["message"] == "Laskusta kysyttävää"
    assert (callback.destination, callback.path) == ("callback", "/v1/callbacks")
    created = callback.payload
    assert created["source"] == "contact_request"
    assert created["phone"] == "+358401234567"
    assert created["email"] == "maija@example.fi"
    assert created["name"] == "Maija Meikäläinen"
    assert created["language"] == "fi"
    assert created["message"] == "Laskusta kysyttävää"
    assert created["preferred"] == {"asap": True}
    assert created["consent"] == {"sms": True, "email": True}
    assert created["request_id"] == f"inbound:{answer['id']}"


async def test_a_window_and_a_slot_are_forwarded(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards
) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    window = {
        "not_before": start.isoformat(),
        "not_after": (start + timedelta(hours=2)).isoformat(),
    }
    await intake.post(URL, json=request_body(preferred=window), headers=auth)
    await intake.post(
        URL, json=request_body(phone="0501234567", preferred={"slot_id": "slot-1"}), headers=auth
    )
    rows = [row for row in await outbox_rows() if row.destination == "callback"]
    assert set(rows[0].payload["preferred"]) == {"not_before", "not_after"}
    assert rows[1].payload["preferred"] == {"slot_id": "slot-1"}


async def test_email_only_is_recorded_and_acknowledged(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards
) -> None:
    response = await intake.post(URL, json=request_body(phone=None), headers=auth)
    assert response.status_code == 202
    assert response.json()["status"] == "recorded"
    history, ack = await outbox_rows()
    assert history.payload["type"] == "contact_request"
    assert (ack.destination, ack.path) == ("callback", "/v1/acknowledgements")
    assert ack.payload["email"] == "maija@example.fi"


async def test_neither_phone_nor_email_is_422(
    intake: AsyncClient, auth: dict[str, str], inbound_rows: Rows
) -> None:
    response = await intake.post(URL, json=request_body(phone=None, email=None), headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["body"], "msg": "phone or email is required"}]
    assert await inbound_rows() == []


async def test_idempotency_key_repeat_returns_the_first_result(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards, inbound_rows: Rows
) -> None:
    headers = auth | {"idempotency-key": "form-42"}
    first = await intake.post(URL, json=request_body(), headers=headers)
    again = await intake.post(URL, json=request_body(), headers=headers)
    other = await intake.post(URL, json=request_body(message="else"), headers=headers)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert len(await inbound_rows()) == 1
    assert len(await outbox_rows()) == 2


async def test_idempotency_keys_are_per_api_key(
    intake: AsyncClient, auth: dict[str, str], make_key: MakeKey, inbound_rows: Rows
) -> None:
    other = {"authorization": f"Bearer {await make_key('intake:write')}"}
    await intake.post(URL, json=request_body(), headers=auth | {"idempotency-key": "k"})
    response = await intake.post(URL, json=request_body(), headers=other | {"idempotency-key": "k"})
    assert response.status_code == 202
    assert len(await inbound_rows()) == 2


async def test_concurrent_repeats_store_one_request(
    intake: AsyncClient, auth: dict[str, str], inbound_rows: Rows
) -> None:
    import asyncio

    headers = auth | {"idempotency-key": "burst"}
    answers = await asyncio.gather(
        *(intake.post(URL, json=request_body(), headers=headers) for _ in range(5))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(await inbound_rows()) == 1


async def test_auth_is_required(intake: AsyncClient, make_key: MakeKey, clean_db: None) -> None:
    nobody = await intake.post(URL, json=request_body())
    reader = {"authorization": f"Bearer {await make_key('history:read')}"}
    wrong = await intake.post(URL, json=request_body(), headers=reader)
    assert nobody.status_code == 401
    assert wrong.status_code == 403


# --- abuse limits -----------------------------------------------------------------------------


async def test_per_phone_limit_with_retry_after(
    intake: AsyncClient, auth: dict[str, str], inbound_rows: Rows, redis_url: str
) -> None:
    notations = ["040 123 4567", "+358 40 1234567", "0401234567", "040/1234567", "00358401234567"]
    for notation in notations:
        ok = await intake.post(URL, json=request_body(phone=notation), headers=auth)
        assert ok.status_code == 202
    refused = await intake.post(URL, json=request_body(phone="040-123 4567"), headers=auth)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 3500 < int(refused.headers["retry-after"]) <= 3600
    assert refused.json()["limit"] == "phone"
    assert len(await inbound_rows()) == 5
    # Another number is not held back by this one.
    other = await intake.post(URL, json=request_body(phone="050 765 4321"), headers=auth)
    assert other.status_code == 202
    # No phone number is ever written to Redis in the clear.
    client = aioredis.Redis.from_url(redis_url)
    keys = [key.decode() for key in await client.keys("ringback:ratelimit:*")]
    await client.aclose()
    assert keys
    assert not any(digits in key for key in keys for digits in ("401234567", "4057654321"))


@pytest.mark.parametrize(
    ("intake_overrides", "dimension"),
    [({"rate_limit_per_ip": 3}, "ip"), ({"rate_limit_per_api_key": 3}, "api_key")],
)
async def test_per_ip_and_per_api_key_limits(
    intake: AsyncClient, auth: dict[str, str], dimension: str
) -> None:
    for i in range(3):
        phone = f"050 123 45{i:02d}"
        assert (
            await intake.post(URL, json=request_body(phone=phone), headers=auth)
        ).status_code == 202
    refused = await intake.post(URL, json=request_body(phone="050 999 9999"), headers=auth)
    assert refused.status_code == 429
    assert refused.json()["limit"] == dimension
    assert int(refused.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    "intake_overrides", [{"rate_limit_window_seconds": 1, "rate_limit_per_phone": 1}]
)
async def test_the_window_ends(intake: AsyncClient, auth: dict[str, str]) -> None:
    import asyncio

    assert (await intake.post(URL, json=request_body(), headers=auth)).status_code == 202
    assert (await intake.post(URL, json=request_body(), headers=auth)).status_code == 429
    await asyncio.sleep(1.1)
    assert (await intake.post(URL, json=request_body(), headers=auth)).status_code == 202


async def test_idempotent_repeats_do_not_count_against_the_limit(
    intake: AsyncClient, auth: dict[str, str]
) -> None:
    headers = auth | {"idempotency-key": "same"}
    answers = [await intake.post(URL, json=request_body(), headers=headers) for _ in range(8)]
    assert [a.status_code for a in answers] == [202] + [200] * 7


# --- SMS allow-list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "sms"),
    [("+46 70 123 45 67", True), ("+372 5123 4567", True), ("+44 7911 123456", False)],
)
async def test_numbers_outside_the_allow_list_get_a_callback_without_sms(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards, phone: str, sms: bool
) -> None:
    response = await intake.post(URL, json=request_body(phone=phone), headers=auth)
    assert response.status_code == 202
    history, callback = await outbox_rows()
    assert callback.payload["consent"]["sms"] is sms
    assert ("sms_blocked" in history.payload["data"]) is not sms


@pytest.mark.parametrize("intake_overrides", [{"sms_allowed_regions": "FI"}])
async def test_the_allow_list_is_configurable(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards
) -> None:
    await intake.post(URL, json=request_body(phone="+46 70 123 45 67"), headers=auth)
    assert (await outbox_rows())[1].payload["consent"]["sms"] is False


# --- phone notation (property) ------------------------------------------------------------------

_SEPARATORS = st.sampled_from(["", " ", "-", "/", "."])


@st.composite
def notations(draw: st.DrawFn) -> str:
    """040 123 4567 in a notation a person might type."""
    prefix = draw(st.sampled_from(["0", "+358 ", "+358", "00358", "00 358 ", "+358 (0)"]))
    groups = ["40", "123", "4567"] if draw(st.booleans()) else ["40", "1234567"]
    sep = draw(_SEPARATORS)
    core = sep.join(groups)
    if prefix == "+358 (0)":
        core = core.lstrip()
    return draw(st.sampled_from(["", " "])) + prefix + core + draw(st.sampled_from(["", " "]))


@given(notations())
def test_any_notation_gives_the_same_callback_phone(notation: str) -> None:
    data = ContactRequestIn.model_validate(request_body(phone=notation))
    assert data.phone is not None
    assert normalize(data.phone, "FI") == "+358401234567"


@pytest.mark.parametrize(
    "notation", ["040 123 4567", "+358 40 1234567", "0401234567", "040/1234567", "00358401234567"]
)
async def test_notations_reach_callback_as_one_number(
    intake: AsyncClient, auth: dict[str, str], outbox_rows: Forwards, notation: str
) -> None:
    await intake.post(URL, json=request_body(phone=notation), headers=auth)
    assert (await outbox_rows())[1].payload["phone"] == "+358401234567"


# --- bad input ----------------------------------------------------------------------------------

_INVALID: list[tuple[str, bytes, str, int, str]] = [
    ("bad json", b'{"channel": "web",', "application/json", 400, "bad-request"),
    (
        "invalid utf-8",
        b'{"channel": "web", "name": "\xff\xfe"}',
        "application/json",
        400,
        "bad-request",
    ),
    ("not an object", b"[1, 2]", "application/json", 422, "validation"),
    (
        "form body",
        b"channel=web&phone=0401234567",
        "application/x-www-form-urlencoded",
        415,
        "unsupported-media-type",
    ),
    ("no content type", dumps(request_body()), "", 415, "unsupported-media-type"),
    ("wrong type", dumps(request_body(phone=401234567)), "application/json", 422, "validation"),
    ("unknown field", dumps(request_body(extra="x")), "application/json", 422, "validation"),
    ("bad channel", dumps(request_body(channel="fax")), "application/json", 422, "validation"),
    ("bad language", dumps(request_body(language="de")), "application/json", 422, "validation"),
    ("long name", dumps(request_body(name="x" * 201)), "application/json", 422, "validation"),
    (
        "long message",
        dumps(request_body(message="x" * 2001)),
        "application/json",
        422,
        "validation",
    ),
    ("control char", dumps(request_body(name="Maija\x00")), "application/json", 422, "validation"),
    (
        "escape char",
        dumps(request_body(message="hi\x1b[31m")),
        "application/json",
        422,
        "validation",
    ),
    ("bad email", dumps(request_body(email="maija@")), "application/json", 422, "validation"),
    ("bad phone", dumps(request_body(phone="12")), "application/json", 422, "validation"),
    (
        "two kinds",
        dumps(request_body(preferred={"asap": True, "slot_id": "s"})),
        "application/json",
        422,
        "validation",
    ),
    (
        "asap false",
        dumps(request_body(preferred={"asap": False})),
        "application/json",
        422,
        "validation",
    ),
    (
        "half window",
        dumps(request_body(preferred={"not_before": "2030-01-01T10:00:00Z"})),
        "application/json",
        422,
        "validation",
    ),
    (
        "reversed window",
        dumps(
            request_body(
                preferred={
                    "not_before": "2030-01-01T12:00:00Z",
                    "not_after": "2030-01-01T10:00:00Z",
                }
            )
        ),
        "application/json",
        422,
        "validation",
    ),
    (
        "naive window",
        dumps(
            request_body(
                preferred={"not_before": "2030-01-01T10:00:00", "not_after": "2030-01-01T12:00:00"}
            )
        ),
        "application/json",
        422,
        "validation",
    ),
    (
        "huge window",
        dumps(
            request_body(
                preferred={
                    "not_before": "2030-01-01T10:00:00Z",
                    "not_after": "2030-03-01T10:00:00Z",
                }
            )
        ),
        "application/json",
        422,
        "validation",
    ),
    (
        "past window",
        dumps(
            request_body(
                preferred={
                    "not_before": "2020-01-01T10:00:00Z",
                    "not_after": "2020-01-01T12:00:00Z",
                }
            )
        ),
        "application/json",
        422,
        "validation",
    ),
    (
        "consent type",
        dumps(request_body(consent={"sms": "maybe"})),
        "application/json",
        422,
        "validation",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "slug"),
    [case[1:] for case in _INVALID],
    ids=[case[0] for case in _INVALID],
)
async def test_bad_input_gets_a_problem_and_stores_nothing(
    intake: AsyncClient,
    auth: dict[str, str],
    inbound_rows: Rows,
    outbox_rows: Forwards,
    body: bytes,
    content_type: str,
    status: int,
    slug: str,
) -> None:
    headers = auth | ({"content-type": content_type} if content_type else {})
    response = await intake.post(URL, content=body, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"urn:ringback:problem:{slug}"
    if status == 422:
        assert problem["errors"]
        assert all({"loc", "msg"} <= set(e) for e in problem["errors"])
    # The answer never echoes what was sent.
    assert "Maija" not in response.text
    assert await inbound_rows() == []
    assert await outbox_rows() == []


async def test_oversized_body_is_413(
    intake: AsyncClient, auth: dict[str, str], inbound_rows: Rows
) -> None:
    response = await intake.post(URL, json=request_body(message="x" * 70_000), headers=auth)
    assert response.status_code == 413
    assert await inbound_rows() == []


async def test_a_bad_idempotency_key_is_400(intake: AsyncClient, auth: dict[str, str]) -> None:
    response = await intake.post(
        URL, json=request_body(), headers=auth | {"idempotency-key": "x" * 201}
    )
    assert response.status_code == 400
