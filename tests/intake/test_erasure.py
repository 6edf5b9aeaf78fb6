"""Erasure: no phone number or email of the person is left anywhere in the intake schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.intake import payloads as p
from tests.intake.conftest import CTI_TOKEN
from tests.intake.test_generic_webhook import post_call
from tests.intake.test_twilio import post_twilio

MakeKey = Callable[..., Awaitable[str]]

# How the person's number and address may appear in what was sent and stored.
TRACES = [
    "+358401234567",
    "358401234567",
    "0401234567",
    "040 123 4567",
    "040-123 4567",
    "040+123+4567",
    "maija@example.fi",
    "maija%40example.fi",
]
BYSTANDER = ["+358507654321", "matti@example.fi"]


async def traces_in_intake(engine: AsyncEngine, needles: list[str]) -> list[str]:
    """Every text, jsonb and bytea column of the intake schema that holds one of `needles`."""
    found: list[str] = []
    async with engine.connect() as conn:
        columns = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'intake' AND data_type IN "
                    "('text', 'character varying', 'jsonb', 'json', 'bytea')"
                )
            )
        ).all()
        assert len(columns) > 20
        for table, column, data_type in columns:
            as_text = (
                f"lower(encode({column}, 'escape'))"
                if data_type == "bytea"
                else f"lower({column}::text)"
            )
            for needle in needles:
                hits = await conn.scalar(
                    text(
                        f"SELECT count(*) FROM intake.{table} WHERE strpos({as_text}, :needle) > 0"
                    ),
                    {"needle": needle.lower()},
                )
                if hits:
                    found.append(f"{table}.{column}: {needle}")
    return found


@pytest.fixture
async def keys(make_key: MakeKey, clean_db: None) -> dict[str, dict[str, str]]:
    return {
        scope: {"authorization": f"Bearer {await make_key(scope)}"}
        for scope in ("intake:write", "internal", "admin", "history:write")
    }


async def test_erasure_leaves_no_phone_or_email_in_the_intake_schema(
    intake: AsyncClient,
    webhook_secret: str,
    keys: dict[str, dict[str, str]],
    engine: AsyncEngine,
) -> None:
    writer = keys["intake:write"]
    # The person reached us every way intake knows, in several notations.
    await post_call(intake, webhook_secret, **{"from": "040 123 4567"})
    await post_call(intake, webhook_secret, metadata={"customer": {"email": "Maija@Example.FI"}})
    await post_call(intake, webhook_secret, status="ringing", **{"from": "040-123 4567"})
    parent = p.sid()
    await post_twilio(intake, p.twilio_voice_request(parent))
    await post_twilio(intake, p.twilio_child_status(p.sid(), parent, "no-answer"))
    await post_twilio(intake, p.twilio_dial_action(p.sid(), "busy", From="040 123 4567"))
    await intake.post(
        f"/v1/webhooks/cti/{CTI_TOKEN}", json=p.cti("hangup", "cti-1", **{"from": "0401234567"})
    )
    await intake.post(
        "/v1/contact-requests",
        json={"channel": "web", "phone": "+358 40 1234567", "email": "maija@example.fi"},
        headers=writer,
    )
    await intake.post(
        "/v1/contact-requests",
        json={"channel": "email", "email": "MAIJA@example.fi"},
        headers=writer,
    )
    # Someone else, who must be left alone.
    await post_call(intake, webhook_secret, **{"from": "050 765 4321"})
    await intake.post(
        "/v1/contact-requests",
        json={"channel": "web", "phone": "0507654321", "email": "matti@example.fi"},
        headers=writer,
    )
    assert await traces_in_intake(engine, TRACES), "the test data holds the person"

    erasure: dict[str, Any] = {
        "id": "erasure-1",
        "phones": ["+358401234567"],
        "emails": ["maija@example.fi"],
        "requested_at": "2026-11-24T12:00:00Z",
    }
    response = await intake.post("/v1/erasures", json=erasure, headers=keys["internal"])

    assert response.status_code == 200, response.text
    counts = response.json()["erased"]
    assert counts["inbound"] >= 9
    assert counts["call_legs"] >= 2
    assert counts["outbox"] >= 10
    assert await traces_in_intake(engine, TRACES) == []
    assert len(await traces_in_intake(engine, BYSTANDER)) >= 4, "others are untouched"
    # Idempotent on the id: the first result, nothing done twice.
    again = await intake.post("/v1/erasures", json=erasure, headers=keys["admin"])
    assert again.status_code == 200
    assert again.json()["erased"] == counts


async def test_erasure_withdraws_undelivered_forwards(
    intake: AsyncClient, webhook_secret: str, keys: dict[str, dict[str, str]], outbox_rows: Any
) -> None:
    await post_call(intake, webhook_secret, **{"from": "040 123 4567"})
    erasure = {"id": "e2", "phones": ["0401234567"], "requested_at": "2026-11-24T12:00:00Z"}
    await intake.post("/v1/erasures", json=erasure, headers=keys["internal"])
    rows = await outbox_rows()
    assert rows
    assert all(row.dead_at is not None for row in rows)
    assert all(row.payload == {"erased": True} for row in rows)


async def test_erasure_needs_internal_or_admin(
    intake: AsyncClient, keys: dict[str, dict[str, str]]
) -> None:
    erasure = {"id": "e3", "phones": [], "requested_at": "2026-11-24T12:00:00Z"}
    assert (await intake.post("/v1/erasures", json=erasure)).status_code == 401
    denied = await intake.post("/v1/erasures", json=erasure, headers=keys["history:write"])
    assert denied.status_code == 403
    bad = await intake.post(
        "/v1/erasures", json={"id": "e4", "emails": ["nope"]}, headers=keys["internal"]
    )
    assert bad.status_code == 422
