"""Scale: the timeline query walks its index, and a batch costs a handful of statements."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.history.app import create_app
from services.history.repository import TimelineQuery, customer_timeline_query, timeline_query
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event

CUSTOMERS = 100
PER_CUSTOMER = 100


async def _fill(engine: AsyncEngine) -> None:
    """Ten thousand events across a hundred customers, then fresh planner statistics.

    Each customer has more events than a page, as a long-standing customer does: reading a
    page in index order then beats reading them all and sorting (with fewer, PostgreSQL
    rightly prefers the latter, and either is cheap).
    """
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO history.customers (id, created_at, updated_at)"
                " SELECT '00000000-0000-7000-8000-' || lpad(c::text, 12, '0'), now(), now()"
                " FROM generate_series(1, :customers) AS c"
            ),
            {"customers": CUSTOMERS},
        )
        await conn.execute(
            text(
                "INSERT INTO history.events (id, customer_id, occurred_at, received_at, channel,"
                " direction, type, summary, data)"
                " SELECT 'e-' || c || '-' || n,"
                " '00000000-0000-7000-8000-' || lpad(c::text, 12, '0'),"
                " timestamptz '2026-01-01' + (n * interval '1 day') + (c * interval '1 minute'),"
                " now(), 'phone', 'inbound', 'missed_call', '', '{}'"
                " FROM generate_series(1, :customers) AS c, generate_series(1, :per) AS n"
            ),
            {"customers": CUSTOMERS, "per": PER_CUSTOMER},
        )
        await conn.execute(text("ANALYZE history.events"))


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


async def _explain(engine: AsyncEngine, **params: Any) -> list[dict[str, Any]]:
    stmt = timeline_query(channel=None, type_=None, before=None, limit=51, **params)
    sql = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    async with engine.connect() as conn:
        raw = await conn.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return _plan_nodes(plan)


async def test_timeline_query_uses_the_timeline_index(clean_db: None, engine: AsyncEngine) -> None:
    await _fill(engine)
    customer = "00000000-0000-7000-8000-000000000042"
    for after in (None, (datetime(2026, 1, 5, 2, 3, tzinfo=UTC), 10**9)):
        nodes = await _explain(engine, customer_id=customer, after=after)
        scans = [n for n in nodes if "Scan" in n["Node Type"]]
        assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
            ("Index Scan", "ix_events_timeline")
        ], scans
        # Already in timeline order: no sort step.
        assert not [n for n in nodes if n["Node Type"] == "Sort"]


async def test_the_api_statement_uses_the_timeline_index(
    clean_db: None, engine: AsyncEngine
) -> None:
    # The API reads the page and the customer record in one statement; the page part must
    # still walk the index in order for a customer with more events than a page.
    await _fill(engine)
    customer = "00000000-0000-7000-8000-000000000042"
    for after in (None, (datetime(2026, 1, 5, 2, 3, tzinfo=UTC), 10**9)):
        page = TimelineQuery(channel=None, type_=None, before=None, after=after, limit=51)
        stmt, values = customer_timeline_query(customer_id=customer, page=page)
        sql = stmt.params(values).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        async with engine.connect() as conn:
            raw = await conn.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"))
        nodes = _plan_nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])
        scans = [(n["Node Type"], n.get("Index Name")) for n in nodes if "Scan" in n["Node Type"]]
        assert sorted(scans) == [
            ("Index Scan", "ix_events_timeline"),
            ("Index Scan", "pk_customers"),
        ], scans
        # Only the final ordering of at most a page of rows, never a sort of all the events.
        sorts = [n for n in nodes if n["Node Type"] == "Sort"]
        assert [n["Plans"][0]["Node Type"] for n in sorts] in ([], ["Nested Loop"]), sorts


def _recorder(statements: list[str]) -> Any:
    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    return record


async def test_a_batch_costs_a_handful_of_statements(
    clean_db: None, settings_kwargs: dict[str, Any], writer: dict[str, str]
) -> None:
    app = create_app(history_settings(settings_kwargs))
    async for client in serve_asgi(app):
        statements: list[str] = []
        count = _recorder(statements)

        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        # 300 events: 100 new customers with a phone and an email each, three events each.
        batch = [
            make_event(customer={"phone": f"04055{i:05d}", "email": f"c{i}@example.fi"})
            for i in range(100)
        ]
        batch += [make_event(customer={"phone": f"04055{i:05d}"}) for i in range(100)]
        batch += [make_event(customer={"email": f"c{i}@example.fi"}) for i in range(100)]
        response = await client.post("/v1/events:batch", json={"events": batch}, headers=writer)
        assert response.status_code == 200, response.text
        ingest = [s for s in statements if "api_keys" not in s]
        assert len({i["event"]["customer_id"] for i in response.json()["items"]}) == 100
        # Locks, look-ups, customers, identities, events, activity, notify, commit and so on:
        # a fixed number, not one or more per event.
        assert len(ingest) <= 15, ingest

        statements.clear()
        again = [make_event(customer={"phone": f"04055{i:05d}"}) for i in range(300)]
        response = await client.post(
            "/v1/events:batch", json={"events": again[:500]}, headers=writer
        )
        assert response.status_code == 200
        assert len([s for s in statements if "api_keys" not in s]) <= 15
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
