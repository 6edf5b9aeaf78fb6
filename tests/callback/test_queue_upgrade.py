"""The upgrade to queues (DESIGN §9): v1's single queue, plan and seats become `default`'s."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from services.callback.app import create_app
from services.callback.capacity import CapacityPlan
from services.callback.settings import CallbackSettings
from services.cli.migrate import alembic_config
from shared.db import asyncpg_dsn
from shared.ids import new_id
from tests.callback.helpers import callback_body, plan_body
from tests.conftest import serve_asgi
from tests.support import infra

STOCKHOLM = ZoneInfo("Europe/Stockholm")
# The last callback revision before queues.
V1_HEAD = "0005"
PENDING_PHONE = "+358401234567"
SCHEDULED_PHONE = "+358507654321"


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def v1_url(database: infra.TestDatabase) -> AsyncIterator[str]:
    """A database of its own on the run's server, made as the run's is, dropped afterwards."""
    name = f"{database.name}_v1_{secrets.token_hex(3)}"
    await _admin(database.admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(database.admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(database.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str, callback_revision: str) -> None:
    for component in ("auth", "intake", "history"):
        command.upgrade(alembic_config(component, url), "head")
    command.upgrade(alembic_config("callback", url), callback_revision)


async def _store_as_v1(url: str, plan: CapacityPlan, slot_start: datetime) -> tuple[str, str]:
    """v1's plan row and two open callbacks, one holding a seat, written as v1 wrote them."""
    now = datetime.now(UTC)
    pending, scheduled = new_id(), new_id()
    slot_end = slot_start + timedelta(minutes=plan.slot_minutes)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO callback.capacity_plans (id, plan, updated_at) VALUES (1, $1, $2)",
                json.dumps(plan.model_dump(mode="json")),
                now,
            )
            await conn.execute(
                "INSERT INTO callback.slot_bookings (slot_start, slot_end, capacity, booked,"
                " updated_at) VALUES ($1, $2, 1, 1, $3)",
                slot_start,
                slot_end,
                now,
            )
            insert = (
                "INSERT INTO callback.callbacks (id, phone, language, status, source, channel,"
                " priority, first_contact_at, due_at, sla_deadline, contact_count, consent_sms,"
                " consent_email, asap, slot_start, slot_end, booking_seq, created_at, updated_at)"
                " VALUES ($1, $2, 'fi', $3, 'missed_call', 'phone', 0, $4, $5, $6, 1, true, true,"
                " $7, $8, $9, $10, $4, $4)"
            )
            deadline = now + timedelta(hours=2)
            await conn.execute(
                insert, pending, PENDING_PHONE, "pending", now, now, deadline, True, None, None, 0
            )
            await conn.execute(
                insert,
                scheduled,
                SCHEDULED_PHONE,
                "scheduled",
                now,
                slot_start,
                max(deadline, slot_end),
                False,
                slot_start,
                slot_end,
                1,
            )
    finally:
        await conn.close()
    return pending, scheduled


async def test_the_upgrade_moves_v1_into_the_default_queue(
    v1_url: str, settings: CallbackSettings, auth: dict[str, str]
) -> None:
    plan = CapacityPlan.model_validate(plan_body(timezone="Europe/Stockholm"))
    day = datetime.now(STOCKHOLM).date() + timedelta(days=1)
    slot_start = datetime.combine(day, time(10), tzinfo=STOCKHOLM).astimezone(UTC)
    await asyncio.to_thread(_migrate, v1_url, V1_HEAD)
    pending, scheduled = await _store_as_v1(v1_url, plan, slot_start)

    await asyncio.to_thread(_migrate, v1_url, "head")

    conn = await asyncpg.connect(asyncpg_dsn(v1_url))
    try:
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'callback'"
            " AND indexname = 'uq_callbacks_phone_open'"
        )
    finally:
        await conn.close()
    assert index is not None
    assert "UNIQUE INDEX" in index
    assert "(phone, queue)" in index
    assert "WHERE" in index

    upgraded = settings.model_copy(update={"database_url": v1_url})
    async for client in serve_asgi(create_app(upgraded)):
        default = await client.get("/v1/queues/default", headers=auth)
        assert default.status_code == 200, default.text
        assert default.json()["effective_timezone"] == "Europe/Stockholm"
        assert default.json()["capacity"] == plan.model_dump(mode="json")
        capacity = await client.get("/v1/capacity", headers=auth)
        assert capacity.json() == plan.model_dump(mode="json")

        listed = (await client.get("/v1/callbacks", headers=auth)).json()["items"]
        assert {c["id"]: (c["queue"], c["status"]) for c in listed} == {
            pending: ("default", "pending"),
            scheduled: ("default", "scheduled"),
        }
        slots = await client.get(
            "/v1/slots",
            params={
                "from": slot_start.isoformat(),
                "to": (slot_start + timedelta(minutes=30)).isoformat(),
            },
            headers=auth,
        )
        assert slots.status_code == 200, slots.text
        assert slots.json()["timezone"] == "Europe/Stockholm"
        assert [(s["start"], s["booked"], s["available"]) for s in slots.json()["items"]] == [
            (slot_start.strftime("%Y-%m-%dT%H:%M:%SZ"), 1, 0),
            ((slot_start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"), 0, 1),
        ]

        # One open callback per number per queue, on the upgraded rows too.
        again = await client.post(
            "/v1/callbacks", json=callback_body(phone=PENDING_PHONE), headers=auth
        )
        assert (again.status_code, again.json()["id"]) == (200, pending)
