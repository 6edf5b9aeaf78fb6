"""Revision 0007 on a copy with data: every row moved into its month, nothing changed, and
writes made while the copy runs kept (bench/history_partition_migration.py times a million)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic import command

from services.cli.migrate import alembic_config
from services.history.models import Event
from shared.db import asyncpg_dsn
from tests.support import infra

EVENTS = 40_000  # two copy batches: writes land between them
CUSTOMERS = 400
# Rows as a string per row in seq order, for comparing whole tables.
ROWS = (
    "SELECT id, row(id, seq, customer_id, occurred_at, received_at, channel, direction, type,"
    " subject_kind, subject_id, actor_kind, actor_id, summary, data, queue, agent_id)::text"
    " FROM history.events ORDER BY seq"
)


@pytest.fixture
async def scratch(database: infra.TestDatabase) -> AsyncIterator[str]:
    """A database of its own at history revision 0006, holding EVENTS events."""
    name = f"{database.name}_mig_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(asyncpg_dsn(database.admin_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database.url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(command.upgrade, alembic_config("history", url), "0006")
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "INSERT INTO history.customers (id, created_at, updated_at)"
                " SELECT 'c-' || c, now(), now() FROM generate_series(0, $1 - 1) AS c",
                CUSTOMERS,
            )
            # Fourteen months, every event in a month of its own customer's timeline.
            await conn.execute(
                "INSERT INTO history.events (id, customer_id, occurred_at, received_at, channel,"
                " direction, type, subject_kind, subject_id, summary, data, queue)"
                " SELECT 'e-' || g, 'c-' || (g % $2),"
                " timestamptz '2025-10-01' + g * interval '15 minutes', now(), 'phone',"
                " 'inbound', CASE WHEN g % 3 = 0 THEN 'callback_requested' ELSE 'missed_call' END,"
                " CASE WHEN g % 3 = 0 THEN 'callback' END, CASE WHEN g % 3 = 0 THEN 'cb-' || g END,"
                " 'event ' || g, jsonb_build_object('n', g), CASE WHEN g % 3 = 0 THEN 'default' END"
                " FROM generate_series(1, $1) AS g",
                EVENTS,
                CUSTOMERS,
            )
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _rows(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return {row[0]: row[1] for row in await conn.fetch(ROWS)}
    finally:
        await conn.close()


async def _writes_meanwhile(url: str) -> None:
    """What the app does while the copy runs: new events, a merge moving one, a purge."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(
            "INSERT INTO history.events (id, customer_id, occurred_at, received_at, channel,"
            " direction, type, summary, data)"
            " SELECT 'new-' || g, 'c-1', timestamptz '2026-06-01' + g * interval '1 hour', now(),"
            " 'sms', 'outbound', 'sms_sent', '', '{}' FROM generate_series(1, 50) AS g"
        )
        # A clock years off: no month partition for it.
        await conn.execute(
            "INSERT INTO history.events (id, customer_id, occurred_at, received_at, channel,"
            " direction, type, summary, data) VALUES ('new-far', 'c-1', '2031-01-01', now(),"
            " 'sms', 'outbound', 'sms_sent', '', '{}')"
        )
        # e-10 was copied by the first batch, e-39000 is not yet: both must end up updated.
        await conn.execute(
            "UPDATE history.events SET customer_id = 'c-2', summary = 'moved'"
            " WHERE id IN ('e-10', 'e-39000')"
        )
        await conn.execute("DELETE FROM history.events WHERE id IN ('e-20', 'e-39500')")
    finally:
        await conn.close()


def _migrate_with_writes(url: str) -> list[int]:
    config = alembic_config("history", url)
    batches: list[int] = []

    def between(batch: int) -> None:
        batches.append(batch)
        if batch == 1:
            # Another connection, as the app's would be (this thread runs the migration's loop).
            writer = threading.Thread(target=lambda: asyncio.run(_writes_meanwhile(url)))
            writer.start()
            writer.join()

    config.attributes["history_between_batches"] = between
    command.upgrade(config, "head")
    return batches


async def test_the_migration_moves_every_row_and_keeps_writes_made_meanwhile(
    scratch: str,
) -> None:
    before = await _rows(scratch)
    assert len(before) == EVENTS

    batches = await asyncio.to_thread(_migrate_with_writes, scratch)
    assert batches == [1, 2]

    after = await _rows(scratch)
    touched = {"e-10", "e-20", "e-39000", "e-39500"}
    # Every row not written meanwhile is there, unchanged to the last column and seq.
    assert {k: v for k, v in after.items() if k in before and k not in touched} == {
        k: v for k, v in before.items() if k not in touched
    }
    # The writes made while the copy ran: all of them, whether the copy had passed or not.
    assert "e-20" not in after
    assert "e-39500" not in after
    assert sum(1 for k in after if k.startswith("new-")) == 51
    assert len(after) == EVENTS - 2 + 51
    conn = await asyncpg.connect(asyncpg_dsn(scratch))
    try:
        moved = await conn.fetch(
            "SELECT id, customer_id, summary FROM history.events"
            " WHERE id IN ('e-10', 'e-39000') ORDER BY id"
        )
        assert [tuple(r) for r in moved] == [("e-10", "c-2", "moved"), ("e-39000", "c-2", "moved")]
        # Same counts per customer as the old table would now show.
        counts = dict(
            await conn.fetch("SELECT customer_id, count(*) FROM history.events GROUP BY 1")
        )
        expected: dict[str, int] = {}
        for g in range(1, EVENTS + 1):
            if f"e-{g}" in ("e-20", "e-39500"):
                continue
            owner = "c-2" if g in (10, 39000) else f"c-{g % CUSTOMERS}"
            expected[owner] = expected.get(owner, 0) + 1
        expected["c-1"] += 51
        assert counts == expected
        # Each row in its month; only the far-future one waits in the default partition.
        misplaced = await conn.fetchval(
            "SELECT count(*) FROM history.events WHERE tableoid::regclass::text <>"
            " 'history.events_p' || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY_MM')"
        )
        assert misplaced == 1
        assert await conn.fetchval("SELECT count(*) FROM ONLY history.events_default") == 1
        kind = "SELECT relkind::text FROM pg_class WHERE oid = 'history.events'::regclass"
        assert await conn.fetchval(kind) == "p"  # partitioned
        # Numbering continues after the old table's: stream positions stay valid.
        highest = await conn.fetchval("SELECT max(seq) FROM history.events")
        await conn.execute(
            "INSERT INTO history.events (id, customer_id, occurred_at, received_at, channel,"
            " direction, type, summary, data)"
            " VALUES ('after', 'c-1', '2026-07-01', now(), 'sms', 'outbound', 'x', '', '{}')"
        )
        assert await conn.fetchval("SELECT seq FROM history.events WHERE id = 'after'") > highest
        # The model's names, so later migrations and the code find what they expect.
        indexes = set(
            await conn.fetchval(
                "SELECT array_agg(indexname::text) FROM pg_indexes"
                " WHERE schemaname = 'history' AND tablename = 'events'"
            )
        )
        table: Any = Event.__table__
        assert indexes == {index.name for index in table.indexes} | {"pk_events"}
        foreign_keys = await conn.fetchval(
            "SELECT array_agg(DISTINCT c.conname::text) FROM pg_constraint AS c"
            " JOIN pg_class AS t ON t.oid = c.conrelid"
            " WHERE c.contype = 'f' AND (t.relname = 'events' OR t.relname LIKE 'events\\_%')"
        )
        assert foreign_keys == ["fk_events_customer_id_customers"]  # each partition's too
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_proc WHERE proname = 'events_mirror'"
        )
        assert leftovers == 0
    finally:
        await conn.close()
