"""A stateless provider's webhook stores the same rows by the one-statement path and by `ingest`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.intake import service
from services.intake.models import Base, Inbound, IntakeOutbox, WebhookReceipt
from services.intake.settings import IntakeSettings
from services.intake.telephony import REGISTRY
from services.intake.telephony.base import ProviderRequest
from shared.contracts import Accepted
from shared.db import unit_of_work
from tests.support.signing import body_of, call_event, signed_headers

# Columns that must differ between two stores of the same webhook: generated ids and clocks.
UNEQUAL = {
    Inbound: {"id", "received_at"},
    IntakeOutbox: {"id", "created_at", "available_at"},
    WebhookReceipt: {"received_at"},
}

KNOWN_CALLER = {"email": "Maija@Example.FI", "name": "Maija Meikäläinen", "language": "sv"}

# Each case is a sequence of deliveries: (the event's overrides, its webhook-id).
CASES: dict[str, list[tuple[dict[str, Any], str | None]]] = {
    "missed call": [({}, "msg_1")],
    "answered call": [({"status": "answered"}, "msg_1")],
    "withheld caller": [({"from": "anonymous"}, "msg_1")],
    "unparseable caller": [({"from": "not a number"}, "msg_1")],
    "caller outside the SMS allow-list": [({"from": "493023125741"}, "msg_1")],
    "what the telephony system knows": [({"metadata": {"customer": KNOWN_CALLER}}, "msg_1")],
    "no queue, no webhook-id": [({"queue": None}, None)],
    "the same call redelivered": [({}, "msg_1"), ({}, "msg_2")],
    "a replayed webhook-id": [({}, "msg_1"), ({}, "msg_1")],
    "two calls": [({}, "msg_1"), ({"call_id": "call-other", "id": "evt_other"}, "msg_2")],
}


def _request(
    secret: str, event: dict[str, Any], msg_id: str | None
) -> tuple[ProviderRequest, service.RawRequest, str | None]:
    body = body_of(event)
    headers = signed_headers(secret, body, msg_id=msg_id or "unused")
    if msg_id is None:
        del headers["webhook-id"]
    request = ProviderRequest(
        body=body,
        content_type=headers["content-type"],
        headers=headers,
        path="/v1/webhooks/generic",
        query="",
        path_params={},
    )
    return request, service.RawRequest.capture(body, headers, ""), msg_id


async def _fast(
    engine: AsyncEngine,
    settings: IntakeSettings,
    delivery: tuple[ProviderRequest, service.RawRequest, str | None],
) -> Accepted:
    request, raw, delivery_id = delivery
    accepted = await service.ingest_stateless(
        engine=engine,
        settings=settings,
        provider=REGISTRY["generic"],
        request=request,
        raw=raw,
        delivery_id=delivery_id,
    )
    assert accepted is not None, "the one-statement path declined a delivery it should store"
    return accepted


async def _general(
    sessions: async_sessionmaker[AsyncSession],
    settings: IntakeSettings,
    delivery: tuple[ProviderRequest, service.RawRequest, str | None],
) -> Accepted:
    request, raw, delivery_id = delivery
    async with unit_of_work(sessions) as session:
        return await service.ingest(
            session=session,
            settings=settings,
            provider=REGISTRY["generic"],
            request=request,
            raw=raw,
            delivery_id=delivery_id,
        )


async def _stored(sessions: async_sessionmaker[AsyncSession]) -> dict[str, list[dict[str, Any]]]:
    """Every intake row a webhook writes, all columns, with generated ids made comparable."""
    tables: dict[str, list[dict[str, Any]]] = {}
    async with sessions() as session:
        for model in UNEQUAL:
            table = model.__table__
            assert isinstance(table, Table)
            order = table.c.id if "id" in table.c else table.c.webhook_id
            rows = (await session.execute(select(table).order_by(order))).mappings().all()
            tables[table.name] = [dict(row) for row in rows]
    # Inbound ids (UUIDv7, so in arrival order) become their position wherever they appear,
    # and each history event's own new id becomes a mark that it has one.
    names = {row["id"]: f"<inbound {n}>" for n, row in enumerate(tables["inbound"])}
    document = json.dumps(tables, default=str, sort_keys=True)
    for inbound_id, name in names.items():
        document = document.replace(inbound_id, name)
    comparable: dict[str, list[dict[str, Any]]] = json.loads(document)
    for row in comparable["outbox"]:
        if row["path"] == "/v1/events":
            assert row["payload"].pop("id")
    for model, unequal in UNEQUAL.items():
        for row in comparable[model.__tablename__]:
            for column in unequal:
                assert row.pop(column) is not None
    return comparable


async def _empty_intake(engine: AsyncEngine) -> None:
    names = ", ".join(
        table.fullname for table in Base.metadata.sorted_tables if table.schema == "intake"
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))


@pytest.mark.parametrize("deliveries", CASES.values(), ids=CASES.keys())
async def test_both_paths_store_the_same_rows(
    clean_db: None,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    intake_settings: IntakeSettings,
    webhook_secret: str,
    deliveries: list[tuple[dict[str, Any], str | None]],
) -> None:
    events = [(call_event(**{"call_id": "call-1", "id": "evt_1", **o}), m) for o, m in deliveries]
    signed = [_request(webhook_secret, event, msg_id) for event, msg_id in events]

    fast = [await _fast(engine, intake_settings, delivery) for delivery in signed]
    by_fast_path = await _stored(sessions)
    await _empty_intake(engine)
    general = [await _general(sessions, intake_settings, delivery) for delivery in signed]
    by_general_path = await _stored(sessions)

    assert [a.status for a in fast] == [a.status for a in general]
    assert by_fast_path["inbound"], "nothing was stored"
    assert by_fast_path == by_general_path


def test_the_comparison_covers_every_column() -> None:
    # A column added to a table is compared unless it is declared unequal here.
    for model, unequal in UNEQUAL.items():
        table = model.__table__
        assert isinstance(table, Table)
        assert unequal <= set(table.c.keys())
