"""Scale: the timeline walks its index in every month it reads, reads only the months it needs,
and a batch costs a handful of statements."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.history import partitions, repository
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
    rightly prefers the latter, and either is cheap). They span January to April 2026, each
    month in its partition, as ingest would have made them.
    """
    async with AsyncSession(engine) as session, session.begin():
        await partitions.ensure_months(
            session, [datetime(2026, month, 1, tzinfo=UTC) for month in (1, 2, 3, 4)]
        )
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


async def _explain_sql(engine: AsyncEngine, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The plan of `sql` as nodes; `args` for its `$n` parameters (a custom plan)."""
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        raw = await driver.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return _plan_nodes(plan)


async def _explain(engine: AsyncEngine, **params: Any) -> list[dict[str, Any]]:
    params = {"channel": None, "type_": None, "before": None, "limit": 51, **params}
    stmt = timeline_query(**params)
    sql = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return await _explain_sql(engine, str(sql))


async def _scans(engine: AsyncEngine, nodes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(node type, table, index of the partitioned table) of each scan in a plan.

    A partition's index is named by PostgreSQL (`events_p2026_01_customer_id_..._idx`); the
    index on `history.events` it belongs to is what the code chose.
    """
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT c.relname, p.relname FROM pg_inherits AS i"
                " JOIN pg_class AS c ON c.oid = i.inhrelid"
                " JOIN pg_class AS p ON p.oid = i.inhparent WHERE p.relkind = 'I'"
            )
        )
        parents: dict[str, str] = {row[0]: row[1] for row in rows}
        rows = await conn.execute(
            text(
                "SELECT c.relname, t.relname FROM pg_index AS i"
                " JOIN pg_class AS c ON c.oid = i.indexrelid"
                " JOIN pg_class AS t ON t.oid = i.indrelid"
            )
        )
        tables: dict[str, str] = {row[0]: row[1] for row in rows}
    out = []
    for node in nodes:
        index = node.get("Index Name") or ""
        table = node.get("Relation Name") or tables.get(index)
        if "Scan" in node["Node Type"] and table:  # not a function's or a subquery's
            out.append((node["Node Type"], table, parents.get(index, index)))
    return out


def _big_sorts(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort steps over more than the (empty) default partition."""
    return [
        node
        for node in nodes
        if node["Node Type"] == "Sort"
        and any(
            n.get("Relation Name", "events_default") != "events_default"
            for n in _plan_nodes(node)[1:]
        )
    ]


def _months(scans: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The scans of month partitions: the default one is empty here, and PostgreSQL rightly
    reads an empty table without an index."""
    return [scan for scan in scans if scan[1].startswith("events_p")]


def _read_months(scans: list[tuple[str, str, str]]) -> list[str]:
    """The month partitions from 2026 on that a plan reads (other tests of the run may leave
    older ones, which any page reaching back in time reads too)."""
    return sorted({table for _, table, _ in _months(scans) if table >= "events_p2026"})


async def test_timeline_query_uses_the_timeline_index(clean_db: None, engine: AsyncEngine) -> None:
    await _fill(engine)
    customer = "00000000-0000-7000-8000-000000000042"
    nodes = await _explain(engine, customer_id=customer, after=None)
    scans = await _scans(engine, nodes)
    # Every month's part of the timeline index, walked in order and merged: no sort step.
    assert {(kind, index) for kind, table, index in _months(scans)} == {
        ("Index Scan", "ix_events_timeline")
    }, scans
    assert _read_months(scans)[:4] == [f"events_p2026_{m:02d}" for m in (1, 2, 3, 4)]
    assert "events_default" in {table for _, table, _ in scans}
    assert not _big_sorts(nodes)


async def test_a_later_page_reads_only_the_months_before_its_cursor(
    clean_db: None, engine: AsyncEngine
) -> None:
    await _fill(engine)
    customer = "00000000-0000-7000-8000-000000000042"
    # More than a page of events before the cursor, so the page is still an ordered walk.
    cursor = (datetime(2026, 3, 20, 2, 3, tzinfo=UTC), 10**9)
    for page in ({"after": cursor}, {"after": None, "before": cursor[0]}):
        nodes = await _explain(engine, customer_id=customer, **page)
        scans = await _scans(engine, nodes)
        # April (and the months created ahead) are pruned at planning.
        assert _read_months(scans) == ["events_p2026_01", "events_p2026_02", "events_p2026_03"]
        assert {index for _, _, index in _months(scans)} == {"ix_events_timeline"}, scans
        assert not _big_sorts(nodes)


async def test_the_api_statement_uses_the_timeline_index(
    clean_db: None, engine: AsyncEngine
) -> None:
    # The API reads the page and the customer record in one statement; the page part must
    # still walk the index in order for a customer with more events than a page.
    await _fill(engine)
    customer = "00000000-0000-7000-8000-000000000042"
    for after in (None, (datetime(2026, 3, 20, 2, 3, tzinfo=UTC), 10**9)):
        page = TimelineQuery(channel=None, type_=None, before=None, after=after, limit=51)
        stmt, values = customer_timeline_query(customer_id=customer, page=page)
        sql = stmt.params(values).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
        nodes = await _explain_sql(engine, str(sql))
        scans = await _scans(engine, nodes)
        assert {index for _, _, index in _months(scans)} == {"ix_events_timeline"}, scans
        assert [index for _, table, index in scans if table == "customers"] == ["pk_customers"]
        if after is not None:  # a cursor in March: April and later are not read
            assert _read_months(scans) == [
                "events_p2026_01",
                "events_p2026_02",
                "events_p2026_03",
            ], scans
        # Only the final ordering of at most a page of rows, never a sort of all the events.
        sorts = _big_sorts(nodes)
        assert [n["Plans"][0]["Node Type"] for n in sorts] in ([], ["Nested Loop"]), sorts


async def test_statistics_read_only_the_months_of_their_range(
    clean_db: None, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The statement statistics run, with its parameters: a custom plan prunes at planning,
    # a generic one at execution; either way February's figures never read March.
    await _fill(engine)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with sessions() as session:
            await repository.bucket_counts(
                session,
                start=datetime(2026, 2, 1, tzinfo=UTC),
                end=datetime(2026, 3, 1, tzinfo=UTC),
                unit="day",
                tz="UTC",
                types=["callback_completed"],
            )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    statement, parameters = next((s, p) for s, p in seen if "history.events" in s)
    nodes = await _explain_sql(engine, statement, *parameters)
    scans = await _scans(engine, nodes)
    assert {table for _, table, _ in scans} == {"events_p2026_02"}, scans


def _recorder(statements: list[str]) -> Any:
    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    return record


async def test_a_batch_costs_a_handful_of_statements(
    clean_db: None, settings_kwargs: dict[str, Any], writer: dict[str, str]
) -> None:
    app = create_app(history_settings(settings_kwargs))
    async for client in serve_asgi(app):
        # The month's partition exists, as the periodic task makes it ahead: creating one is
        # a handful of statements more, once a month.
        async with AsyncSession(app.state.engine) as session, session.begin():
            await partitions.ensure_months(session, [datetime(2026, 11, 24, tzinfo=UTC)])
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


async def test_erasure_reaches_a_customer_through_an_index_in_every_month(
    clean_db: None, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # An erasure has no time range: it reads every month, each through an index on the
    # customer, never a scan of a month's events.
    await _fill(engine)
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with sessions() as session:
            await repository.scrub_events(
                session,
                customer_id="00000000-0000-7000-8000-000000000042",
                keep_keys=["queue"],
                needles=["+358401234567"],
            )
            await session.rollback()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    statement, parameters = next((s, p) for s, p in seen if "history.events" in s)
    scans = await _scans(engine, await _explain_sql(engine, statement, *parameters))
    assert _read_months(scans)[:4] == [f"events_p2026_{m:02d}" for m in (1, 2, 3, 4)]
    # The months holding the rows; an empty month is rightly read without an index.
    filled = {f"events_p2026_{m:02d}" for m in (1, 2, 3, 4)}
    assert "Seq Scan" not in {kind for kind, table, _ in scans if table in filled}, scans
