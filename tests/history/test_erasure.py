"""Erasure: PII leaves history, an audit line stays, callback and intake are told, durably."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import redis.asyncio as aioredis
from httpx import AsyncClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.callback.app import create_app as create_callback_app
from services.callback.settings import CallbackSettings
from services.history.app import create_app
from services.history.models import HistoryOutbox
from services.intake.app import create_app as create_intake_app
from services.intake.settings import IntakeSettings
from tests.history.conftest import history_settings, make_event
from tests.support.infra import free_port
from tests.support.live import LiveServer, live

PHONE = "040 123 4567"
E164 = "+358401234567"
EMAIL = "maija.meikalainen@example.fi"
NAME = "Maija Meikäläinen"
# Every way the person's data could be written down; none may be left anywhere.
TRACES = [E164, "358401234567", "0401234567", "040 123 4567", "401234567", EMAIL, NAME, "crm-77"]


async def _post(client: AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    response = await client.post("/v1/events", json=make_event(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _seed(client: AsyncClient, writer: dict[str, str]) -> tuple[str, str]:
    """A customer with a phone, later merged with an email-only record; both ids."""
    by_phone = await _post(
        client,
        writer,
        occurred_at="2026-11-20T09:00:00Z",
        customer={"phone": PHONE, "name": NAME},
        summary=f"Missed call from {E164}",
        data={"queue": "billing", "caller": E164},
    )
    by_email = await _post(
        client,
        writer,
        occurred_at="2026-11-21T09:00:00Z",
        channel="web",
        type="contact_request",
        customer={"email": EMAIL, "external_id": "crm-77"},
        summary=f"{NAME} asks about an invoice",
        data={"message": f"Call me on {PHONE} please", "source": "web-form"},
    )
    bridge = await _post(
        client,
        writer,
        occurred_at="2026-11-22T09:00:00Z",
        channel="email",
        type="note",
        customer={"phone": E164, "email": EMAIL},
        actor={"kind": "customer", "id": EMAIL},
    )
    await _post(
        client,
        writer,
        occurred_at="2026-11-22T10:00:00Z",
        type="callback_completed",
        direction="internal",
        customer={"phone": E164},
        subject={"kind": "callback", "id": "cb-1"},
        actor={"kind": "agent", "id": "agent-7"},
        data={"status": "completed", "outcome": "reached", "agent_id": "agent-7", "note": NAME},
    )
    assert bridge["customer_id"] == by_phone["customer_id"]
    return by_phone["customer_id"], by_email["customer_id"]


async def test_erasure_removes_pii_and_keeps_the_shape(
    client: AsyncClient,
    writer: dict[str, str],
    reader: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    survivor, merged = await _seed(client, writer)
    before = (await client.get(f"/v1/customers/{survivor}/timeline", headers=reader)).json()

    assert (await client.delete(f"/v1/customers/{survivor}", headers=reader)).status_code == 403
    assert (await client.delete(f"/v1/customers/{survivor}", headers=writer)).status_code == 403
    assert (await client.delete(f"/v1/customers/{survivor}")).status_code == 401
    unknown = await client.delete(
        "/v1/customers/0190b7a0-0000-7000-8000-000000000000", headers=admin
    )
    assert unknown.status_code == 404

    response = await client.delete(f"/v1/customers/{survivor}", headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["customer_id"] == survivor
    assert result["customers"] == 2  # the survivor and the record merged into it
    assert result["identities"] == 2
    assert result["events"] == len(before["items"])
    assert result["forwarded_to"] == ["callback", "intake"]
    # Idempotent: again, and by the merged-away id, the same answer.
    for customer_id in (survivor, merged):
        again = await client.delete(f"/v1/customers/{customer_id}", headers=admin)
        assert again.status_code == 200
        assert again.json() == result

    profile = (await client.get(f"/v1/customers/{merged}", headers=reader)).json()
    assert profile["id"] == survivor
    assert profile["erased_at"] == result["erased_at"]
    assert (profile["name"], profile["external_id"]) == (None, None)
    assert (profile["phones"], profile["emails"]) == ([], [])
    assert profile["merged_ids"] == [merged]
    for params in ({"phone": PHONE}, {"email": EMAIL}):
        found = await client.get("/v1/customers", params=params, headers=reader)
        assert found.json()["items"] == []

    after = (await client.get(f"/v1/customers/{survivor}/timeline", headers=reader)).json()
    erased_event, *kept = after["items"]
    assert erased_event["type"] == "customer_erased"
    assert erased_event["data"] == {"erasure_id": result["id"]}
    # The shape stays for statistics: ids, times, channels, types, subjects, agents.
    shape = ("id", "occurred_at", "channel", "direction", "type", "subject")
    assert [{k: e[k] for k in shape} for e in kept] == [
        {k: e[k] for k in shape} for e in before["items"]
    ]
    assert all(e["summary"] == "" for e in kept)
    by_type = {e["type"]: e for e in kept}
    assert by_type["missed_call"]["data"] == {"queue": "billing"}
    assert by_type["contact_request"]["data"] == {"source": "web-form"}
    assert by_type["note"]["actor"] == {"kind": "customer", "id": None}
    assert by_type["callback_completed"]["data"] == {
        "status": "completed",
        "outcome": "reached",
        "agent_id": "agent-7",
    }
    assert by_type["callback_completed"]["actor"] == {"kind": "agent", "id": "agent-7"}
    assert "customer_merged" in by_type

    # The peers' requests wait in the outbox with the phones and emails, nowhere else.
    async with sessions() as session:
        rows = (await session.scalars(select(HistoryOutbox).order_by(HistoryOutbox.id))).all()
    assert [(r.destination, r.path, r.delivered_at) for r in rows] == [
        ("callback", "/v1/erasures", None),
        ("intake", "/v1/erasures", None),
    ]
    for row in rows:
        assert row.payload["id"] == result["id"]
        assert row.payload["phones"] == [E164]
        assert row.payload["emails"] == [EMAIL]

    # The number is a stranger now: a new contact starts a new customer.
    fresh = await _post(client, writer, customer={"phone": PHONE})
    assert fresh["customer_id"] != survivor


async def test_erasing_a_customer_without_identities_tells_nobody(
    client: AsyncClient,
    writer: dict[str, str],
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    anonymous = await _post(client, writer, customer={"phone": "anonymous"})
    response = await client.delete(f"/v1/customers/{anonymous['customer_id']}", headers=admin)
    assert response.status_code == 200
    assert response.json()["forwarded_to"] == []
    async with sessions() as session:
        assert (await session.scalars(select(HistoryOutbox))).all() == []


async def test_erasure_keeps_a_survey_score_for_the_csat_figures(
    client: AsyncClient, writer: dict[str, str], reader: dict[str, str], admin: dict[str, str]
) -> None:
    """The score of an answered survey is not personal and stays (the comment goes), so the
    queue's CSAT average does not change when the customer is erased (DESIGN §13)."""
    answered = await _post(
        client,
        writer,
        occurred_at="2026-11-22T11:00:00Z",
        channel="sms",
        type="survey_answered",
        customer={"phone": E164},
        subject={"kind": "callback", "id": "cb-9"},
        actor={"kind": "customer"},
        data={
            "score": 4,
            "comment": f"{NAME} was helped",
            "queue": "billing",
            "agent_id": "agent-7",
            "survey_id": "sv-1",
        },
    )
    response = await client.delete(f"/v1/customers/{answered['customer_id']}", headers=admin)
    assert response.status_code == 200, response.text
    timeline = await client.get(f"/v1/customers/{answered['customer_id']}/timeline", headers=reader)
    (event,) = [e for e in timeline.json()["items"] if e["type"] == "survey_answered"]
    assert event["data"]["score"] == 4
    assert event["data"]["survey_id"] == "sv-1"
    assert "comment" not in event["data"] or event["data"]["comment"] in (None, "")
    assert NAME not in str(event)


async def _scan_database(engine: AsyncEngine, needles: list[str]) -> list[str]:
    """Every text, varchar, json(b) and bytea column of every table in every schema holding
    one of `needles`, as `schema.table.column`."""
    patterns = [f"%{n}%" for n in needles]
    found: list[str] = []
    async with engine.connect() as conn:
        columns = (
            await conn.execute(
                text(
                    "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
                    " FROM information_schema.columns AS c"
                    " JOIN information_schema.tables AS t"
                    "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
                    " WHERE t.table_type = 'BASE TABLE'"
                    " AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
                    " AND c.data_type IN"
                    " ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea',"
                    "  'ARRAY')"
                )
            )
        ).all()
        assert len(columns) > 20  # every service's tables, not just history's
        for schema, table, column, data_type in columns:
            value = f'"{column}"::text'
            if data_type == "bytea":
                value = f"convert_from(\"{column}\", 'UTF8')"
            count = await conn.scalar(
                text(
                    f'SELECT count(*) FROM "{schema}"."{table}"'
                    f" WHERE {value} ILIKE ANY(CAST(:patterns AS text[]))"
                ),
                {"patterns": patterns},
            )
            if count:
                found.append(f"{schema}.{table}.{column}")
    return found


async def _scan_redis(url: str, needles: list[str]) -> list[str]:
    client = aioredis.Redis.from_url(url)
    found: list[str] = []
    try:
        async for key in client.scan_iter(count=500):
            kind = (await client.type(key)).decode()
            if kind == "string":
                values = [await client.get(key) or b""]
            elif kind == "hash":
                values = [b"%s=%s" % kv for kv in (await client.hgetall(key)).items()]
            elif kind == "list":
                values = await client.lrange(key, 0, -1)
            elif kind == "set":
                values = list(await client.smembers(key))
            elif kind == "zset":
                values = await client.zrange(key, 0, -1)
            else:
                values = []
            blob = b"\n".join([key, *values]).decode("utf-8", "replace").lower()
            found += [f"{key!r}: {n}" for n in needles if n.lower() in blob]
    finally:
        await client.aclose()
    return found


async def _wait_delivered(
    sessions: async_sessionmaker[AsyncSession], count: int, seconds: float = 60.0
) -> list[HistoryOutbox]:
    async with asyncio.timeout(seconds):
        while True:
            async with sessions() as session:
                rows = list(
                    (await session.scalars(select(HistoryOutbox).order_by(HistoryOutbox.id))).all()
                )
            if len(rows) == count and all(r.delivered_at or r.dead_at for r in rows):
                return rows
            await asyncio.sleep(0.2)


async def test_erasure_reaches_callback_and_intake_after_an_outage_and_leaves_no_trace(
    clean_db: None,
    settings_kwargs: dict[str, Any],
    make_key: Any,
    internal_key: str,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    redis_url: str,
) -> None:
    ports = {"callback": free_port(), "intake": free_port()}
    peers = {f"{name}_url": f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {**settings_kwargs, **peers}
    callback = LiveServer(create_callback_app(CallbackSettings(**common)), ports["callback"])
    intake = LiveServer(create_intake_app(IntakeSettings(**common)), ports["intake"])
    history_app = create_app(
        history_settings(common, history_erasure_relay_enabled=True, history_relay_poll_seconds=0.2)
    )
    internal = {"Authorization": f"Bearer {internal_key}"}
    writer = {"Authorization": f"Bearer {await make_key('history:write', 'intake:write')}"}
    admin = {"Authorization": f"Bearer {await make_key('admin')}"}

    await callback.start()
    await intake.start()
    async with live(history_app) as history, httpx.AsyncClient() as http:
        # The person reaches us: intake keeps the request, callback a callback, history events.
        contact = await http.post(
            f"{intake.url}/v1/contact-requests",
            json={
                "channel": "web",
                "name": NAME,
                "phone": PHONE,
                "email": EMAIL,
                "message": f"Please call {PHONE}",
            },
            headers=writer,
        )
        assert contact.status_code == 202, contact.text
        created = await http.post(
            f"{callback.url}/v1/callbacks",
            json={
                "request_id": "req-erasure-1",
                "source": "contact_request",
                "channel": "web",
                "first_contact_at": "2026-11-24T09:00:00Z",
                "phone": PHONE,
                "email": EMAIL,
                "name": NAME,
                "message": f"Please call {PHONE}",
            },
            headers=internal,
        )
        assert created.status_code in (200, 201, 202), created.text
        async with AsyncClient(base_url=history.url) as client:
            survivor, _ = await _seed(client, writer)
        assert await _scan_database(engine, [E164, EMAIL])  # the scan does find them

        # Callback and intake are down when the erasure is asked for.
        await callback.stop()
        await intake.stop()
        erased = await http.delete(f"{history.url}/v1/customers/{survivor}", headers=admin)
        assert erased.status_code == 200, erased.text
        async with asyncio.timeout(30):
            while True:
                async with sessions() as session:
                    rows = (await session.scalars(select(HistoryOutbox))).all()
                if rows and all(r.attempts >= 1 and r.last_error for r in rows):
                    break
                await asyncio.sleep(0.1)
        assert all(r.delivered_at is None and r.dead_at is None for r in rows)
        assert all(r.payload["phones"] == [E164] for r in rows)

        # They come back: the relay delivers, and forgets the payload once acknowledged.
        await callback.start()
        await intake.start()
        try:
            delivered = await _wait_delivered(sessions, 2)
        finally:
            await callback.stop()
            await intake.stop()
    assert [(r.destination, r.dead_at, r.last_error) for r in delivered] == [
        ("callback", None, None),
        ("intake", None, None),
    ]
    assert all(r.payload == {"id": erased.json()["id"], "delivered": True} for r in delivered)

    assert await _scan_database(engine, TRACES) == []
    assert await _scan_redis(redis_url, TRACES) == []
