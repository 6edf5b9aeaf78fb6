"""All of history's SQL: customers, identities, events and the activity roll-up."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    Select,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.history import partitions
from services.history.models import Customer, CustomerActivity, CustomerIdentity, Erasure, Event
from shared import fast_sql
from shared.db import utcnow
from shared.jsonutil import dumps
from shared.vocabulary import Direction

# First key of history's two-int advisory locks; the two-int key space never meets the
# single-bigint one the migration lock uses.
_LOCK_NAMESPACE = 0x48495354  # "HIST"

# A literal, not a bind parameter, so the planner can match the partial index's predicate.
_IS_CALLBACK: ColumnElement[str] = literal_column("'callback'")


async def lock_keys(session: AsyncSession, keys: Collection[str]) -> None:
    """Take transaction-scoped advisory locks on `keys`, in one global order.

    Sorting by the lock number (not the text) keeps two transactions from deadlocking even
    when different keys hash alike.
    """
    if not keys:
        return
    await fast_sql.fetch(session, _FAST_LOCK_KEYS, {"ns": _LOCK_NAMESPACE, "keys": sorted(keys)})


_LOCK_KEYS = text(
    "SELECT pg_advisory_xact_lock(:ns, h) FROM ("
    " SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k"
    " ORDER BY h) AS ordered"
)
# The statements every ingest batch runs, compiled once (`shared.fast_sql`).
_FAST_LOCK_KEYS = fast_sql.Statement.of(_LOCK_KEYS)


def _among(column: Any, values: Collection[str]) -> ColumnElement[bool]:
    """`column = ANY(:values)`, one array parameter: the statement's text is the same however
    many values a batch has. `IN` with a list sends a parameter per value, so each batch size
    was a statement of its own, prepared and kept (up to 100 a connection) by asyncpg: under
    a backlog, when batches come in every size, history's memory grew by the statements
    (bench/RESULTS.md, issue #21). PostgreSQL plans both forms alike."""
    condition: ColumnElement[bool] = column == any_(literal(list(values), ARRAY(column.type)))
    return condition


async def existing_events(session: AsyncSession, ids: Collection[str]) -> dict[str, Event]:
    """Stored events among `ids`, by id."""
    if not ids:
        return {}
    rows = await session.scalars(select(Event).where(_among(Event.id, ids)))
    return {row.id: row for row in rows}


# An event's columns as `insert_events` writes them (`seq` is the database's own).
_EVENT_COLUMNS = (
    "id",
    "customer_id",
    "occurred_at",
    "received_at",
    "channel",
    "direction",
    "type",
    "subject_kind",
    "subject_id",
    "actor_kind",
    "actor_id",
    "summary",
    "data",
    "queue",
    "agent_id",
)


@functools.cache
def _insert_events_statement() -> Any:
    """Any number of events from one array per column: one statement text for every batch
    size. Rows as a list went out as SQLAlchemy's multi-row VALUES, a statement per batch
    size with fifteen parameters a row, each prepared and kept per connection: under a
    backlog history's memory grew by them (bench/RESULTS.md, issue #21). `data` travels as
    JSON text, cast back in the statement."""
    table = Event.__table__
    assert isinstance(table, Table)
    columns = table.c
    new_events = (
        func.unnest(
            *(
                bindparam(name, type_=ARRAY(Text if name == "data" else columns[name].type))
                for name in _EVENT_COLUMNS
            )
        )
        .table_valued(*_EVENT_COLUMNS)
        .render_derived(name="new_event")
    )
    values = [
        cast(new_events.c[name], JSONB) if name == "data" else new_events.c[name]
        for name in _EVENT_COLUMNS
    ]
    # The key holds the partition key: a resend with the same time is skipped here, one with
    # another time was found by `existing_events` under the id's advisory lock.
    inserted = (
        insert(table)
        .from_select(list(_EVENT_COLUMNS), select(*values))
        .on_conflict_do_nothing(index_elements=[columns.id, columns.occurred_at])
        .returning(*columns)
        .cte("inserted")
    )
    # Read back as events through a SELECT: an ORM INSERT takes a parameter dictionary
    # for rows of its own (the "bulk" mode), not for a statement's arrays.
    return select(Event).from_statement(select(*inserted.c))


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[Event]:
    """Store events in one statement; ids already taken are skipped (the first one wins)."""
    if not rows:
        return []
    # A month without its partition yet gets one here (or the rows wait in the default one).
    await partitions.ensure_months(session, {row["occurred_at"] for row in rows})
    now = utcnow()
    defaults: dict[str, Any] = {"received_at": now, "summary": "", "data": {}}
    arrays: dict[str, list[Any]] = {name: [] for name in _EVENT_COLUMNS}
    for row in rows:
        for name in _EVENT_COLUMNS:
            arrays[name].append(row.get(name, defaults.get(name)))
    arrays["data"] = [dumps(value).decode() for value in arrays["data"]]
    result = await session.scalars(
        _insert_events_statement(),
        arrays,
        execution_options={"populate_existing": True},
    )
    return list(result)


_ACTIVITY_KEY = ("customer_id", "channel", "direction", "type")


@functools.cache
def _bump_activity_statement() -> Any:
    """The roll-up's upsert for any number of rows, from one array per column: one
    statement, where an executemany ran the upsert once per row (about four per call)."""
    table = CustomerActivity.__table__
    assert isinstance(table, Table)
    columns = table.c
    bumped = (
        func.unnest(
            *(bindparam(name, type_=ARRAY(Text)) for name in _ACTIVITY_KEY),
            bindparam("count", type_=ARRAY(Integer)),
            bindparam("last_occurred_at", type_=ARRAY(columns.last_occurred_at.type)),
        )
        .table_valued(*_ACTIVITY_KEY, "count", "last_occurred_at")
        .render_derived(name="bumped")
    )
    names = [*_ACTIVITY_KEY, "count", "last_occurred_at"]
    # The table, not the mapped class: an ORM-enabled INSERT takes its rows as parameters.
    stmt = insert(table).from_select(names, select(*(bumped.c[n] for n in names)))
    return stmt.on_conflict_do_update(
        index_elements=[columns[name] for name in _ACTIVITY_KEY],
        set_={
            "count": columns.count + stmt.excluded.count,
            "last_occurred_at": func.greatest(
                columns.last_occurred_at, stmt.excluded.last_occurred_at
            ),
        },
    )


async def bump_activity(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add counts to customers' activity roll-up, one statement for many (customer, kind) rows.

    Each row is `customer_id, channel, direction, type, count, last_occurred_at`; the caller
    aggregates first, since one statement may not update the same row twice.
    """
    if not rows:
        return
    names = [*_ACTIVITY_KEY, "count", "last_occurred_at"]
    await fast_sql.fetch(
        session,
        fast_sql.compiled(_bump_activity_statement()),
        {name: [row[name] for row in rows] for name in names},
    )


async def notify(session: AsyncSession, channel: str, payloads: Sequence[str]) -> None:
    """NOTIFY `channel` once per payload, in one statement; delivered when the caller commits."""
    if not payloads:
        return
    await fast_sql.fetch(session, _FAST_NOTIFY, {"channel": channel, "payloads": list(payloads)})


_NOTIFY = text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")
_FAST_NOTIFY = fast_sql.Statement.of(_NOTIFY)


async def activity(session: AsyncSession, customer_id: str) -> Sequence[CustomerActivity]:
    """The customer's activity roll-up rows."""
    rows = await session.scalars(
        select(CustomerActivity).where(CustomerActivity.customer_id == customer_id)
    )
    return rows.all()


async def customer_ids_by_identity(
    session: AsyncSession, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Which customer each known (kind, value) identity belongs to."""
    if not pairs:
        return {}
    # `= ANY(array)` on both key columns is one index scan; a list of row tuples is not.
    wanted = set(pairs)
    params = {
        "kinds": sorted({kind for kind, _ in wanted}),
        "values": sorted({value for _, value in wanted}),
    }
    rows = await fast_sql.fetch(session, _FAST_IDENTITIES, params)
    return {
        (kind, value): customer_id for kind, value, customer_id in rows if (kind, value) in wanted
    }


_IDENTITIES = select(
    CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.customer_id
).where(
    CustomerIdentity.kind == func.any(bindparam("kinds", type_=ARRAY(String))),
    CustomerIdentity.value == func.any(bindparam("values", type_=ARRAY(String))),
)
_FAST_IDENTITIES = fast_sql.Statement.of(_IDENTITIES)


async def customer_ids_by_external_id(
    session: AsyncSession, external_ids: Collection[str]
) -> dict[str, str]:
    """For each external id, the oldest customer carrying it, merged or not."""
    if not external_ids:
        return {}
    rows = await session.execute(
        select(Customer.external_id, Customer.id)
        .where(_among(Customer.external_id, external_ids))
        .ext(distinct_on(Customer.external_id))
        .order_by(Customer.external_id, Customer.created_at, Customer.id)
    )
    return {external_id: customer_id for external_id, customer_id in rows if external_id}


async def lock_customers(session: AsyncSession, ids: Collection[str]) -> list[Customer]:
    """Load and row-lock customers, in id order so concurrent lockers queue rather than deadlock."""
    if not ids:
        return []
    rows = await session.scalars(
        select(Customer)
        .where(_among(Customer.id, ids))
        .order_by(Customer.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_customers(session: AsyncSession, ids: Collection[str]) -> list[Customer]:
    """Customers by id, oldest first."""
    if not ids:
        return []
    rows = await session.scalars(
        select(Customer).where(_among(Customer.id, ids)).order_by(Customer.created_at)
    )
    return list(rows)


async def add_customer(session: AsyncSession, customer: Customer) -> Customer:
    session.add(customer)
    await session.flush()
    return customer


async def add_identities(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Attach identities (`kind, value, customer_id`); ones already known stay where they are."""
    if not rows:
        return
    now = utcnow()
    values = [{**row, "created_at": now} for row in rows]
    await session.execute(insert(CustomerIdentity).on_conflict_do_nothing(), values)


async def identities_of(
    session: AsyncSession, customer_ids: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each customer's (kind, value) identities, in the order they were learned."""
    out: dict[str, list[tuple[str, str]]] = {cid: [] for cid in customer_ids}
    if not customer_ids:
        return out
    rows = await session.execute(
        select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
        .where(_among(CustomerIdentity.customer_id, customer_ids))
        .order_by(CustomerIdentity.created_at, CustomerIdentity.kind, CustomerIdentity.value)
    )
    for customer_id, kind, value in rows:
        out[customer_id].append((kind, value))
    return out


async def merge_customer(session: AsyncSession, *, loser_id: str, survivor_id: str) -> None:
    """Move everything of `loser_id` onto `survivor_id` and point the loser at it."""
    await session.execute(
        update(CustomerIdentity)
        .where(CustomerIdentity.customer_id == loser_id)
        .values(customer_id=survivor_id)
    )
    await session.execute(
        update(Event).where(Event.customer_id == loser_id).values(customer_id=survivor_id)
    )
    moved = select(
        literal(survivor_id, String(36)).label("customer_id"),
        CustomerActivity.channel,
        CustomerActivity.direction,
        CustomerActivity.type,
        CustomerActivity.count,
        CustomerActivity.last_occurred_at,
    ).where(CustomerActivity.customer_id == loser_id)
    stmt = insert(CustomerActivity).from_select(
        ["customer_id", "channel", "direction", "type", "count", "last_occurred_at"], moved
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[
            CustomerActivity.customer_id,
            CustomerActivity.channel,
            CustomerActivity.direction,
            CustomerActivity.type,
        ],
        set_={
            "count": CustomerActivity.count + stmt.excluded.count,
            "last_occurred_at": func.greatest(
                CustomerActivity.last_occurred_at, stmt.excluded.last_occurred_at
            ),
        },
    )
    await session.execute(stmt)
    await session.execute(delete(CustomerActivity).where(CustomerActivity.customer_id == loser_id))
    now = utcnow()
    # Keep merge chains one hop long: whoever pointed at the loser now points at the survivor.
    await session.execute(
        update(Customer)
        .where(Customer.merged_into == loser_id)
        .values(merged_into=survivor_id, updated_at=now)
    )
    await session.execute(
        update(Customer)
        .where(Customer.id == loser_id)
        .values(merged_into=survivor_id, updated_at=now)
    )


_EVENTS = Event.__table__
_CUSTOMERS = Customer.__table__


class TimelineEvent(NamedTuple):
    """One event of a timeline page, as read: what the page shows, and `seq` for its cursor.

    A plain tuple, not an ORM object or a SQLAlchemy `Row` (whose attribute access alone took
    a quarter of a millisecond per page). `data_json` is PostgreSQL's JSON text of `data`:
    the answer embeds it as is instead of parsing it and encoding it again.
    """

    id: str
    seq: int
    occurred_at: datetime
    received_at: datetime
    channel: str
    direction: str
    type: str
    customer_id: str
    subject_kind: str | None
    subject_id: str | None
    actor_kind: str | None
    actor_id: str | None
    summary: str
    data_json: str


_PAGE_COLUMNS = (
    *(_EVENTS.c[name] for name in TimelineEvent._fields[:-1]),
    cast(_EVENTS.c.data, Text).label("data_json"),
)
_NEWEST_FIRST = (_EVENTS.c.occurred_at.desc(), _EVENTS.c.seq.desc())


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """Which rows of a timeline to read: the filters, the (occurred_at, seq) a page's cursor
    continues after, and how many (`shared.pagination.page_of` makes them a page)."""

    channel: str | None
    type_: str | None
    before: datetime | None
    after: tuple[datetime, int] | None
    limit: int


def _page_conditions(
    customer_id: ColumnElement[str] | str,
    *,
    channel: ColumnElement[str] | str | None,
    type_: ColumnElement[str] | str | None,
    before: ColumnElement[datetime] | datetime | None,
    after: tuple[ColumnElement[datetime] | datetime, ColumnElement[int] | int] | None,
) -> list[ColumnElement[bool]]:
    """The WHERE of a timeline page: one customer, the filters, strictly past the cursor.

    Each value is a literal or a bind parameter (None: that filter is not applied).
    """
    conditions = [_EVENTS.c.customer_id == customer_id]
    if channel is not None:
        conditions.append(_EVENTS.c.channel == channel)
    if type_ is not None:
        conditions.append(_EVENTS.c.type == type_)
    if before is not None:
        conditions.append(_EVENTS.c.occurred_at < before)
    if after is not None:
        conditions.append(tuple_(_EVENTS.c.occurred_at, _EVENTS.c.seq) < tuple_(*after))
        # Implied by the row comparison, but only a plain bound lets PostgreSQL skip the
        # monthly partitions after the cursor.
        conditions.append(_EVENTS.c.occurred_at <= after[0])
    return conditions


def timeline_query(
    *,
    customer_id: str,
    channel: str | None,
    type_: str | None,
    before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Select[Any]:
    """The keyset query behind a timeline page (tests EXPLAIN this very statement)."""
    conditions = _page_conditions(
        customer_id, channel=channel, type_=type_, before=before, after=after
    )
    return select(*_PAGE_COLUMNS).where(*conditions).order_by(*_NEWEST_FIRST).limit(limit)


async def timeline(
    session: AsyncSession, *, customer_id: str, page: TimelineQuery
) -> list[TimelineEvent]:
    """Up to `page.limit` of the customer's events newest first, strictly past `page.after`."""
    stmt = timeline_query(
        customer_id=customer_id,
        channel=page.channel,
        type_=page.type_,
        before=page.before,
        after=page.after,
        limit=page.limit,
    )
    return [TimelineEvent._make(row) for row in await session.execute(stmt)]


@functools.cache
def _customer_timeline_statement(
    *, channel: bool, type_: bool, before: bool, after: bool
) -> Select[Any]:
    """`customer_timeline_query`'s statement for one combination of filters.

    Built once per combination (sixteen at most) and bound at execution: building it afresh
    took more Python time than PostgreSQL took to run it.
    """
    customer_id = bindparam("customer_id", type_=String)
    after_at = bindparam("after_at", type_=DateTime(timezone=True))
    conditions = _page_conditions(
        customer_id,
        channel=bindparam("channel", type_=String) if channel else None,
        type_=bindparam("type_", type_=String) if type_ else None,
        before=bindparam("before", type_=DateTime(timezone=True)) if before else None,
        after=(after_at, bindparam("after_seq", type_=BigInteger)) if after else None,
    )
    # Not correlated with the customer row: the planner sees the id itself, so a customer
    # with thousands of events gets the ordered walk of `ix_events_timeline` (with the id
    # taken from the joined row, it estimated an average customer and sorted all of them).
    events = (
        select(*_PAGE_COLUMNS)
        .where(*conditions)
        .order_by(*_NEWEST_FIRST)
        .limit(bindparam("limit", type_=Integer))
        .subquery("events")
    )
    return (
        select(events, _CUSTOMERS.c.merged_into)
        .select_from(_CUSTOMERS.outerjoin(events, true()))
        .where(_CUSTOMERS.c.id == customer_id)
        .order_by(events.c.occurred_at.desc(), events.c.seq.desc())
    )


def customer_timeline_query(
    *, customer_id: str, page: TimelineQuery
) -> tuple[Select[Any], dict[str, Any]]:
    """A timeline page together with the customer record it belongs to, and its parameters.

    Rows: the page's columns then the customer's `merged_into`; one per event of the page, a
    single one with NULL page columns when the page is empty, none when no customer has the id.
    """
    stmt = _customer_timeline_statement(
        channel=page.channel is not None,
        type_=page.type_ is not None,
        before=page.before is not None,
        after=page.after is not None,
    )
    values: dict[str, Any] = {"customer_id": customer_id, "limit": page.limit}
    filters = {"channel": page.channel, "type_": page.type_, "before": page.before}
    values.update((name, value) for name, value in filters.items() if value is not None)
    if page.after is not None:
        values.update(after_at=page.after[0], after_seq=page.after[1])
    return stmt, values


async def customer_timeline(
    session: AsyncSession, *, customer_id: str, page: TimelineQuery
) -> tuple[str | None, list[TimelineEvent]] | None:
    """A page of the customer's timeline and whether they exist, in one round trip.

    None when no customer has the id; else the customer's `merged_into` (a merged-away
    record has no events left: the caller reads the survivor's timeline instead) and the page.
    """
    stmt, values = customer_timeline_query(customer_id=customer_id, page=page)
    rows = list(await session.execute(stmt, values))
    if not rows:
        return None
    width = len(TimelineEvent._fields)
    events = [TimelineEvent._make(row[:width]) for row in rows if row[0] is not None]
    return rows[0].merged_into, events


async def latest_callback_events(
    session: AsyncSession, *, customer_id: str, types: Collection[str]
) -> list[Event]:
    """For each callback on the customer's timeline, its latest event among `types`."""
    stmt = (
        select(Event)
        .where(
            Event.customer_id == customer_id,
            Event.subject_kind == _IS_CALLBACK,
            Event.subject_id.is_not(None),
            Event.type.in_(list(types)),
        )
        .ext(distinct_on(Event.subject_id))
        .order_by(Event.subject_id, Event.occurred_at.desc(), Event.seq.desc())
    )
    return list(await session.scalars(stmt))


# Live stream ------------------------------------------------------------------------------


async def events_after(
    session: AsyncSession, *, customer_id: str, after_seq: int, limit: int
) -> list[Event]:
    """The customer's events stored after `after_seq`, in the order they were stored."""
    stmt = (
        select(Event)
        .where(Event.customer_id == customer_id, Event.seq > after_seq)
        .order_by(Event.seq)
        .limit(limit)
    )
    return list(await session.scalars(stmt))


async def last_seq(session: AsyncSession, customer_id: str) -> int:
    """The highest `seq` on the customer's timeline (0 when empty)."""
    value = await session.scalar(
        select(func.coalesce(func.max(Event.seq), 0)).where(Event.customer_id == customer_id)
    )
    return int(value or 0)


async def merged_into(session: AsyncSession, survivor_id: str) -> list[str]:
    """Ids of the customers merged into `survivor_id`, oldest first."""
    rows = await session.scalars(
        select(Customer.id)
        .where(Customer.merged_into == survivor_id)
        .order_by(Customer.created_at, Customer.id)
    )
    return list(rows)


# Erasure ----------------------------------------------------------------------------------


async def get_erasure(session: AsyncSession, customer_id: str) -> Erasure | None:
    return await session.scalar(select(Erasure).where(Erasure.customer_id == customer_id))


async def delete_identities(session: AsyncSession, customer_id: str) -> int:
    result = await session.execute(
        delete(CustomerIdentity).where(CustomerIdentity.customer_id == customer_id)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def blank_customers(session: AsyncSession, ids: Collection[str], *, at: datetime) -> None:
    """Forget names and external ids of these customer records and mark them erased."""
    await session.execute(
        update(Customer)
        .where(_among(Customer.id, ids))
        .values(name=None, external_id=None, erased_at=at, updated_at=at)
    )


async def scrub_events(
    session: AsyncSession, *, customer_id: str, keep_keys: Collection[str], needles: Sequence[str]
) -> int:
    """Strip an erased customer's events down to what is not personal data.

    The summary goes; `data` keeps only the listed keys with scalar values that contain
    none of `needles` (the erased phones and emails); a customer actor loses its id.
    """
    escaped = (n.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for n in needles)
    patterns = [f"%{n}%" for n in escaped]
    result = await session.execute(
        text(
            "UPDATE history.events SET summary = '',"
            " actor_id = CASE WHEN actor_kind = 'customer' THEN NULL ELSE actor_id END,"
            " data = COALESCE(("
            "   SELECT jsonb_object_agg(kv.key, kv.value) FROM jsonb_each(data) AS kv"
            "   WHERE kv.key = ANY(CAST(:keep AS text[]))"
            "     AND jsonb_typeof(kv.value) IN ('string', 'number', 'boolean', 'null')"
            "     AND NOT (kv.value #>> '{}') ILIKE ANY(CAST(:patterns AS text[]))"
            " ), '{}'::jsonb)"
            " WHERE customer_id = :customer_id"
        ),
        {"keep": sorted(keep_keys), "patterns": patterns, "customer_id": customer_id},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def latest_channel(session: AsyncSession, customer_id: str) -> str | None:
    return await session.scalar(
        select(Event.channel)
        .where(Event.customer_id == customer_id)
        .order_by(Event.occurred_at.desc(), Event.seq.desc())
        .limit(1)
    )


# Retention --------------------------------------------------------------------------------


async def purge_batch(session: AsyncSession, *, cutoff: datetime, limit: int) -> tuple[int, int]:
    """Delete up to `limit` events older than `cutoff`, oldest first; keep the roll-up right.

    Returns (events deleted, customer records deleted). Customers left with no events and no
    identities go too, with the merged-away records that only pointed at them.
    """
    row = (
        await session.execute(
            text(
                "WITH gone AS ("
                "  DELETE FROM history.events WHERE id IN ("
                "    SELECT id FROM history.events WHERE occurred_at < :cutoff"
                "    ORDER BY occurred_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
                "  RETURNING customer_id, channel, direction, type"
                "), counted AS ("
                "  SELECT customer_id, channel, direction, type, count(*) AS n"
                "  FROM gone GROUP BY 1, 2, 3, 4"
                "), bumped AS ("
                "  UPDATE history.customer_activity AS a SET count = a.count - c.n"
                "  FROM counted AS c WHERE a.customer_id = c.customer_id"
                "  AND a.channel = c.channel AND a.direction = c.direction AND a.type = c.type"
                "  RETURNING a.customer_id"
                ")"
                " SELECT (SELECT count(*) FROM gone),"
                " ARRAY(SELECT DISTINCT customer_id FROM counted),"
                " (SELECT count(*) FROM bumped)"
            ),
            {"cutoff": cutoff, "limit": limit},
        )
    ).one()
    deleted, touched = int(row[0]), list(row[1])
    return deleted, await _forget_emptied(session, touched)


async def drop_retired_events(session: AsyncSession, table: str) -> tuple[int, int]:
    """Drop a month partition retention detached, keeping the roll-up right, in one transaction.

    Returns (events dropped, customer records deleted), as `purge_batch` does: the counts
    come off `customer_activity` and the table goes together, so a crash leaves both or
    neither. `table` is a name `partitions.retired_tables` gave.
    """
    row = (
        await session.execute(
            text(
                "WITH counted AS ("
                "  SELECT customer_id, channel, direction, type, count(*) AS n"
                f"  FROM history.{table} GROUP BY 1, 2, 3, 4"
                "), bumped AS ("
                "  UPDATE history.customer_activity AS a SET count = a.count - c.n"
                "  FROM counted AS c WHERE a.customer_id = c.customer_id"
                "  AND a.channel = c.channel AND a.direction = c.direction AND a.type = c.type"
                "  RETURNING a.customer_id"
                ")"
                " SELECT (SELECT coalesce(sum(n), 0) FROM counted),"
                " ARRAY(SELECT DISTINCT customer_id FROM counted),"
                " (SELECT count(*) FROM bumped)"
            )
        )
    ).one()
    await session.execute(text(f"DROP TABLE history.{table}"))
    return int(row[0]), await _forget_emptied(session, list(row[1]))


async def _forget_emptied(session: AsyncSession, touched: list[str]) -> int:
    """After events of `touched` customers went: drop emptied roll-up rows, and customers
    left with no events and no identities (with the records merged into them); how many."""
    if not touched:
        return 0
    # One array parameter, not an IN list: a month's partition touches many thousands.
    ids = {"ids": touched}
    await session.execute(
        text(
            "DELETE FROM history.customer_activity"
            " WHERE customer_id = ANY(CAST(:ids AS text[])) AND count <= 0"
        ),
        ids,
    )
    # A customer with roll-up rows left has events left: only the others need the look-up
    # into every partition.
    orphans = list(
        await session.scalars(
            text(
                "SELECT c.id FROM history.customers AS c"
                " WHERE c.id = ANY(CAST(:ids AS text[]))"
                " AND NOT EXISTS (SELECT FROM history.customer_activity AS a"
                "  WHERE a.customer_id = c.id)"
                " AND NOT EXISTS (SELECT FROM history.events AS e WHERE e.customer_id = c.id)"
                " AND NOT EXISTS (SELECT FROM history.identities AS i"
                "  WHERE i.customer_id = c.id)"
            ),
            ids,
        )
    )
    if not orphans:
        return 0
    gone = {"ids": orphans}
    aliases = await session.execute(
        text("DELETE FROM history.customers WHERE merged_into = ANY(CAST(:ids AS text[]))"), gone
    )
    deleted = await session.execute(
        text("DELETE FROM history.customers WHERE id = ANY(CAST(:ids AS text[]))"), gone
    )
    return int(getattr(aliases, "rowcount", 0) or 0) + int(getattr(deleted, "rowcount", 0) or 0)


# Statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsFilter:
    """Whose events statistics count (DESIGN §9): one queue, one agent, or both; None: all."""

    queue: str | None = None
    agent_id: str | None = None

    def sql(self, alias: str = "") -> str:
        """The filter as `AND ...` conditions on the event columns, with bind parameters."""
        prefix = f"{alias}." if alias else ""
        out = ""
        if self.queue is not None:
            out += f" AND {prefix}queue = :queue"
        if self.agent_id is not None:
            out += f" AND {prefix}agent_id = :agent_id"
        return out

    def params(self) -> dict[str, str]:
        values = {"queue": self.queue, "agent_id": self.agent_id}
        return {name: value for name, value in values.items() if value is not None}


ALL_EVENTS = StatsFilter()


async def bucket_counts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    unit: str,
    tz: str,
    types: Collection[str],
    only: StatsFilter = ALL_EVENTS,
    not_contacts: Collection[str] = (),
) -> list[tuple[datetime, str, str, str, int, int]]:
    """Per local bucket (in `tz`), channel, direction and type: events and distinct subjects.

    Only inbound events not of the types `not_contacts` names, and events of the given
    `types`, of the queue and agent `only` names.
    """
    rows = await session.execute(
        text(
            "SELECT date_trunc(:unit, occurred_at, :tz) AS bucket, channel, direction, type,"
            " count(*), count(DISTINCT subject_id)"
            " FROM history.events"
            " WHERE occurred_at >= :start AND occurred_at < :end"
            " AND ((direction = :inbound AND NOT type = ANY(CAST(:not_contacts AS text[])))"
            " OR type = ANY(CAST(:types AS text[])))"
            f"{only.sql()}"
            " GROUP BY 1, 2, 3, 4"
        ),
        {
            "unit": unit,
            "tz": tz,
            "start": start,
            "end": end,
            "inbound": Direction.INBOUND,
            "types": list(types),
            "not_contacts": list(not_contacts),
            **only.params(),
        },
    )
    return [(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]


async def demand(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    only: StatsFilter = ALL_EVENTS,
    not_contacts: Collection[str] = (),
) -> list[tuple[int, int, int]]:
    """Inbound contacts (inbound events not of the types `not_contacts` names) by local ISO
    weekday (1 = Monday) and hour in `tz`."""
    rows = await session.execute(
        text(
            "SELECT CAST(extract(isodow FROM occurred_at AT TIME ZONE :tz) AS int),"
            " CAST(extract(hour FROM occurred_at AT TIME ZONE :tz) AS int), count(*)"
            " FROM history.events"
            " WHERE occurred_at >= :start AND occurred_at < :end AND direction = :inbound"
            " AND NOT type = ANY(CAST(:not_contacts AS text[]))"
            f"{only.sql()}"
            " GROUP BY 1, 2"
        ),
        {
            "tz": tz,
            "start": start,
            "end": end,
            "inbound": Direction.INBOUND,
            "not_contacts": list(not_contacts),
            **only.params(),
        },
    )
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]


class Closing(NamedTuple):
    """A callback's first closing event in a range, as its data tells it."""

    callback_id: str
    type: str
    occurred_at: datetime
    outcome: str | None
    first_contact_at: str | None
    sla_deadline: str | None
    # `data.same_agent` is JSON `true`: the agent who reached the customer is the one they
    # last spoke with.
    same_agent: bool
    # The agent who closed it (the event's agent column), for figures per agent.
    agent_id: str | None = None


async def closing_events(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    types: Collection[str],
    only: StatsFilter = ALL_EVENTS,
) -> list[Closing]:
    """Each callback's first event of `types` in the range, when that event is of the queue
    and agent `only` names."""
    rows = await session.execute(
        text(
            "SELECT subject_id, type, occurred_at, outcome, first_contact_at, sla_deadline,"
            " same_agent, agent_id FROM ("
            "  SELECT DISTINCT ON (subject_id) subject_id, type, occurred_at,"
            "  data->>'outcome' AS outcome, data->>'first_contact_at' AS first_contact_at,"
            "  data->>'sla_deadline' AS sla_deadline,"
            "  coalesce(data->'same_agent' = CAST('true' AS jsonb), false) AS same_agent,"
            "  queue, agent_id"
            "  FROM history.events"
            "  WHERE occurred_at >= :start AND occurred_at < :end"
            "  AND subject_kind = 'callback' AND subject_id IS NOT NULL"
            "  AND type = ANY(CAST(:types AS text[]))"
            "  ORDER BY subject_id, occurred_at, seq"
            " ) AS firsts"
            f" WHERE true{only.sql('firsts')}"
        ),
        {"start": start, "end": end, "types": list(types), **only.params()},
    )
    return [Closing._make(row) for row in rows]


async def counts_by_day_and_agent(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    type_: str,
    only: StatsFilter = ALL_EVENTS,
) -> list[tuple[datetime, str | None, int]]:
    """Events of `type_` per local day (in `tz`) and agent, of the queue and agent `only` names."""
    rows = await session.execute(
        text(
            "SELECT date_trunc('day', occurred_at, :tz), agent_id, count(*)"
            " FROM history.events"
            " WHERE occurred_at >= :start AND occurred_at < :end AND type = :type"
            f"{only.sql()}"
            " GROUP BY 1, 2"
        ),
        {"tz": tz, "start": start, "end": end, "type": type_, **only.params()},
    )
    return [(r[0], r[1], int(r[2])) for r in rows]


# A survey score as the survey stores it (§13): a whole number 1-5, in JSON a number or text.
_SURVEY_SCORE = "data->>'score' IN ('1', '2', '3', '4', '5')"
# One survey, however many answers or retries of its event: its id, else the event's own.
_SURVEY_KEY = "coalesce(data->>'survey_id', subject_id, CAST(id AS text))"


async def survey_answers(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    answered: str,
    only: StatsFilter = ALL_EVENTS,
) -> list[tuple[datetime, str | None, int, int]]:
    """Per local day and agent: the surveys answered in the range with a score, and the sum
    of their scores (a survey's latest answer counts)."""
    rows = await session.execute(
        text(
            "SELECT date_trunc('day', occurred_at, :tz), agent_id, count(*), sum(score) FROM ("
            f"  SELECT DISTINCT ON ({_SURVEY_KEY}) occurred_at, agent_id, queue,"
            "  CAST(data->>'score' AS int) AS score"
            "  FROM history.events"
            "  WHERE occurred_at >= :start AND occurred_at < :end AND type = :answered"
            f"  AND {_SURVEY_SCORE}"
            f"  ORDER BY {_SURVEY_KEY}, occurred_at DESC, seq DESC"
            " ) AS answers"
            f" WHERE true{only.sql('answers')}"
            " GROUP BY 1, 2"
        ),
        {"tz": tz, "start": start, "end": end, "answered": answered, **only.params()},
    )
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


async def surveys_sent(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    sent: str,
    answered: str,
    only: StatsFilter = ALL_EVENTS,
) -> list[tuple[datetime, str | None, int, int]]:
    """Per local day and agent: the surveys sent in the range, and how many of them have a
    scored answer (at any time since)."""
    rows = await session.execute(
        text(
            "SELECT date_trunc('day', s.occurred_at, :tz), s.agent_id,"
            " count(DISTINCT s.key), count(DISTINCT s.key) FILTER (WHERE a.key IS NOT NULL)"
            f" FROM (SELECT {_SURVEY_KEY} AS key, occurred_at, agent_id, queue"
            "  FROM history.events"
            "  WHERE occurred_at >= :start AND occurred_at < :end AND type = :sent) AS s"
            f" LEFT JOIN (SELECT DISTINCT {_SURVEY_KEY} AS key FROM history.events"
            f"  WHERE occurred_at >= :start AND type = :answered AND {_SURVEY_SCORE}) AS a"
            " ON a.key = s.key"
            f" WHERE true{only.sql('s')}"
            " GROUP BY 1, 2"
        ),
        {
            "tz": tz,
            "start": start,
            "end": end,
            "sent": sent,
            "answered": answered,
            **only.params(),
        },
    )
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


async def callback_origins(
    session: AsyncSession, callback_ids: Sequence[str]
) -> dict[str, tuple[datetime, list[str], list[str]]]:
    """Per callback: its earliest event's time, and every `first_contact_at` and
    `sla_deadline` its events carry (latest event first)."""
    if not callback_ids:
        return {}
    rows = await session.execute(
        text(
            "SELECT subject_id, min(occurred_at),"
            " array_remove(array_agg(data->>'first_contact_at'), NULL),"
            " array_remove(array_agg(data->>'sla_deadline' ORDER BY occurred_at DESC), NULL)"
            " FROM history.events"
            " WHERE subject_kind = 'callback' AND subject_id = ANY(CAST(:ids AS text[]))"
            " GROUP BY subject_id"
        ),
        {"ids": list(callback_ids)},
    )
    return {r[0]: (r[1], list(r[2]), list(r[3])) for r in rows}
