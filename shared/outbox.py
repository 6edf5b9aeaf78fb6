"""The transactional outbox: a row written with the change, delivered over HTTP until acknowledged.

A service adds an `Outbox` model (this mixin plus its own `Base`) and calls `enqueue()` in the
same transaction as the change it announces. A hot path that writes in one statement instead
builds it from `insert_rows` (or runs `add_rows`): either way `row_values` is the one
declaration of a new row and `channel_for` the one NOTIFY channel. Their tables are created and
changed by the steps in `shared.outbox_migrations`. `OutboxRelay` then delivers rows to peers:

- several relays may run at once (`FOR UPDATE SKIP LOCKED`);
- rows for one customer (`ordering_key`) go out in the order they were written: a row waits
  while an earlier row of its key and destination is still undelivered;
- transient failures (network, 5xx, 408, 429) are retried forever with backoff and jitter,
  so a peer that is down for an hour gets everything when it returns;
- a permanent refusal (any other 4xx) parks the row as dead, visible and replayable, and it
  no longer holds back later rows of its key;
- a `NOTIFY` at commit wakes relays at once; polling is the fallback;
- each row keeps the `traceparent` of the work that wrote it and is delivered with it, so the
  receiver continues that trace; each delivery is a span of it;
- where the peer has a batch endpoint for a path (`BatchRoute`), the rows of one pass bound
  there go in one request: the batch grows with the backlog, so a busy peer gets fewer,
  larger requests. A batch the peer refuses as a whole (a 4xx) is sent again row by row,
  so one bad row is parked alone and the rest are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import structlog
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel
from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    DateTime,
    Identity,
    Index,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Text,
    Update,
    bindparam,
    cast,
    distinct,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared import fast_sql
from shared.backoff import backoff_seconds
from shared.db import database_unavailable, utcnow
from shared.eventloop import first_set
from shared.jsonutil import dumps
from shared.tracing import current_traceparent, parse_traceparent, start_span

log = structlog.get_logger("ringback.outbox")

GAUGE_INTERVAL_SECONDS = 5.0
_NOTIFIED_KEY = "ringback.outbox.notified"


# What an erasure leaves of a row that named an erased person: withdrawn on purpose, never
# to be delivered (intake writes it; `ringback outbox replay` refuses it).
ERASED_PAYLOAD: dict[str, Any] = {"erased": True}


class OutboxMixin:
    """Columns of an outbox table; combine with a service's declarative `Base`."""

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    destination: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    ordering_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The W3C trace of the request or job that wrote the row (55 characters in version 00).
    traceparent: Mapped[str | None] = mapped_column(String(55))


def outbox_indexes() -> tuple[Index, Index, Index]:
    """The partial indexes every outbox table needs: rows to deliver in order, by due time,
    and per key.

    Delivered rows stay in the table (until purged), so the relay's `ORDER BY id LIMIT n`
    must walk an index of pending rows only: on the primary key it would step over every
    delivered row on every batch, and a backlog of thousands made each batch a full scan.
    """
    pending = text("delivered_at IS NULL AND dead_at IS NULL")
    return (
        Index("ix_outbox_pending", "available_at", postgresql_where=pending),
        Index(
            "ix_outbox_pending_key", "destination", "ordering_key", "id", postgresql_where=pending
        ),
        Index("ix_outbox_pending_id", "id", postgresql_where=pending),
    )


def channel_for(model: type[OutboxMixin]) -> str:
    """The LISTEN/NOTIFY channel of an outbox table."""
    return f"ringback_outbox_{_table(model).schema}"


def _table(model: type[OutboxMixin]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


# The columns a writer sets on a new row; the rest are the relay's (id is an identity).
NEW_ROW_COLUMNS = (
    "destination",
    "path",
    "payload",
    "ordering_key",
    "traceparent",
    "created_at",
    "available_at",
    "attempts",
)


async def enqueue(
    session: AsyncSession,
    model: type[OutboxMixin],
    *,
    destination: str,
    path: str,
    payload: Mapping[str, Any] | BaseModel,
    ordering_key: str,
) -> None:
    """Add a row to the outbox in the caller's transaction; relays wake when it commits.

    A contract model is stored as the JSON its receiver validates (unset optionals left out).
    The current trace goes with the row, and on to the receiver when it is delivered.

    The transaction's first row for a destination is written at once with the NOTIFY that
    wakes the relays, in one statement (`add_rows`; a flush and a NOTIFY were two round
    trips); later rows for it join the flush, the relays woken for it already.
    """
    values = row_values(
        destination=destination, path=path, payload=payload, ordering_key=ordering_key
    )
    if _notified(session, channel_for(model), destination):
        # The mixin has no constructor of its own; the concrete model's declarative one applies.
        factory: Any = model
        session.add(factory(**values))
        return
    await add_rows(session, model, [values])


def row_values(
    *,
    destination: str,
    path: str,
    payload: Mapping[str, Any] | BaseModel,
    ordering_key: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every column of a new row (`NEW_ROW_COLUMNS`): the one declaration all writers use."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", exclude_none=True)
    now = now or utcnow()
    return {
        "destination": destination,
        "path": path,
        "payload": dict(payload),
        "ordering_key": ordering_key,
        "traceparent": current_traceparent(),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
    }


# Of those, the ones that differ row by row; the rest are the same for rows written together
# (one `now`, no attempt yet). Sent once rather than as three more arrays, they took about
# 20 µs (4%) off each of intake's webhook statements.
_PER_ROW_COLUMNS = ("destination", "path", "payload", "ordering_key", "traceparent")
_PER_BATCH_COLUMNS = tuple(name for name in NEW_ROW_COLUMNS if name not in _PER_ROW_COLUMNS)
_PER_ROW_KEYS = tuple((name, f"outbox_{name}") for name in _PER_ROW_COLUMNS)
_PER_BATCH_KEYS = tuple((name, f"outbox_{name}") for name in _PER_BATCH_COLUMNS)


def insert_rows(
    model: type[OutboxMixin],
    *,
    when: ColumnElement[bool] | None = None,
    extra: Sequence[str] = (),
    positions: Select[Any] | None = None,
) -> Insert:
    """`INSERT` of the rows in `rows_params`, in their order, `RETURNING id`; to run as a CTE.

    The rows arrive as one array per column that differs row by row, so a statement compiled
    once takes any number of them. Identity ids follow the arrays' order, and the relay
    delivers in id order.
    `when`: a condition of the enclosing statement; no row is written unless it holds.
    `extra`: the model's own text columns beyond the outbox's (a webhook delivery's endpoint),
    one value per row, passed to `rows_params` too.
    `positions`: a select of 1-based positions in the arrays; only the rows there are written
    (each send of a batch marked `sent` writes its own event).
    """
    table = _table(model)
    per_row_columns = (*_PER_ROW_COLUMNS, *extra)
    # Every per-row column is text (payloads as JSON text: a jsonb array would need a driver
    # codec for it). As `text[]`, the columns' own types check each value once, on insert;
    # as `varchar(n)[]` each value was checked twice, about 1.5% of the statement's time.
    arrays = (
        func.unnest(*(bindparam(f"outbox_{name}", type_=ARRAY(Text)) for name in per_row_columns))
        .table_valued(*per_row_columns, with_ordinality="n")
        .render_derived(name="new_row")
    )
    per_row: dict[str, ColumnElement[Any]] = {name: arrays.c[name] for name in per_row_columns}
    per_row["payload"] = cast(arrays.c.payload, JSONB)
    per_batch: dict[str, ColumnElement[Any]] = {
        name: bindparam(f"outbox_{name}", type_=table.c[name].type) for name in _PER_BATCH_COLUMNS
    }
    values = {**per_row, **per_batch}
    names = [*NEW_ROW_COLUMNS, *extra]
    rows = select(*(values[name] for name in names)).order_by(arrays.c.n)
    if when is not None:
        rows = rows.where(when)
    if positions is not None:
        rows = rows.where(arrays.c.n.in_(positions))
    # The destination too: `notify_once` names the rows' destinations to the relays.
    return table.insert().from_select(names, rows).returning(table.c.id, table.c.destination)


def notify_once(model: type[OutboxMixin], written: Any) -> Select[Any]:
    """`pg_notify` of the outbox's channel if the CTE `written` (`insert_rows`) returned a
    row, else nothing; its payload the rows' destinations (`notified_destinations`).

    NOTIFY is transactional: delivered at commit, like the rows, and one wakes every relay.
    A relay holding rows back to gather them need not look again for a NOTIFY that names
    only their destinations (`OutboxRelay.run`).
    """
    channel = bindparam("outbox_channel", type_=Text)
    destinations = func.string_agg(distinct(written.c.destination), literal_column("','"))
    return (
        select(func.pg_notify(channel, destinations))
        .select_from(written)
        .having(func.count() > literal_column("0", Integer))
    )


def notified_destinations(payload: str) -> frozenset[str] | None:
    """The destinations a NOTIFY on an outbox channel names; None when it names none (an
    operator's replay, a writer of another version): then it may be for any of them."""
    named = frozenset(name for name in payload.split(",") if name)
    return named or None


def rows_params(
    model: type[OutboxMixin], rows: Sequence[Mapping[str, Any]], *, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """The parameters of `insert_rows` and `notify_once` for these `row_values`.

    Rows written together must agree on the columns that are one value per batch.
    `extra`: as given to `insert_rows`, each row's value under the column's name.
    """
    params: dict[str, Any] = {
        key: [row[name] for row in rows] for name, key in _PER_ROW_KEYS if name != "payload"
    }
    for name in extra:
        params[f"outbox_{name}"] = [row[name] for row in rows]
    params["outbox_payload"] = [dumps(row["payload"]).decode() for row in rows]
    first = rows[0] if rows else dict.fromkeys(_PER_BATCH_COLUMNS)
    for name, key in _PER_BATCH_KEYS:
        params[key] = first[name]
    for row in rows[1:]:
        if any(row[name] != first[name] for name in _PER_BATCH_COLUMNS):
            raise ValueError("outbox rows written together differ in their time or attempts")
    params["outbox_channel"] = channel_for(model)
    return params


_ADD_ROWS: dict[type[OutboxMixin], Select[Any]] = {}


def _add_rows_statement(model: type[OutboxMixin]) -> Select[Any]:
    statement = _ADD_ROWS.get(model)
    if statement is None:
        statement = _ADD_ROWS[model] = notify_once(model, insert_rows(model).cte("new_rows"))
    return statement


async def add_rows(
    session: AsyncSession, model: type[OutboxMixin], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert `row_values` rows and NOTIFY their relays in one statement, in the session's
    transaction: one round trip where an ORM flush and a NOTIFY took two."""
    if rows:
        statement = fast_sql.compiled(_add_rows_statement(model))
        await fast_sql.fetch(session, statement, rows_params(model, rows))
        channel = channel_for(model)
        _remember_notified(session, {(channel, row["destination"]) for row in rows})


def _notified(session: AsyncSession, channel: str, destination: str) -> bool:
    """Whether this transaction has sent a NOTIFY on `channel` naming `destination`
    (delivered at its commit)."""
    done: tuple[object, set[tuple[str, str]]] | None = session.info.get(_NOTIFIED_KEY)
    transaction = session.sync_session.get_transaction()
    return (
        transaction is not None
        and done is not None
        and done[0] is transaction
        and ((channel, destination) in done[1])
    )


def _remember_notified(session: AsyncSession, named: set[tuple[str, str]]) -> None:
    """Note the NOTIFY just sent (its channel and each destination it named), for the rest
    of the transaction. One sent inside a savepoint is not remembered: rolling the savepoint
    back takes it back too."""
    if session.in_nested_transaction():
        return
    transaction = session.sync_session.get_transaction()
    done: tuple[object, set[tuple[str, str]]] | None = session.info.get(_NOTIFIED_KEY)
    if done is None or done[0] is not transaction:
        done = (transaction, set())
        session.info[_NOTIFIED_KEY] = done
    done[1].update(named)


@dataclass(slots=True)
class OutboxRow:
    """A row a relay's pass claimed: changed in memory as it is delivered, retried or parked,
    and written back in one statement at the end of the pass (`write_back_statement`)."""

    id: int
    destination: str
    path: str
    payload: dict[str, Any]
    ordering_key: str
    created_at: datetime
    available_at: datetime
    attempts: int
    traceparent: str | None
    last_error: str | None
    delivered_at: datetime | None
    dead_at: datetime | None
    # A later row of its key and destination was undelivered when the pass claimed it: once
    # this one is delivered or parked, that row may go (read by the claim, never written).
    followed: bool = False
    # The payload was replaced (`OutboxRelay.redact_delivered`): written back too.
    redacted: bool = False


# What a pass reads of each row's columns: `OutboxRow`'s fields, in its order (`followed`,
# computed, comes right after them).
_CLAIMED_COLUMNS = tuple(
    name for name in OutboxRow.__dataclass_fields__ if name not in ("followed", "redacted")
)
_CLAIM: dict[type[OutboxMixin], Select[Any]] = {}


def claim_statement(model: type[OutboxMixin]) -> Select[Any]:
    """The rows due for delivery, oldest first, locked for this pass (`claim_limit` of them).

    A row waits while an earlier row of its key and destination is undelivered and not
    dead; rows another relay holds are skipped, not waited for. Each row says whether a later
    one of its key is waiting (`OutboxRow.followed`, one index probe a row).
    """
    statement = _CLAIM.get(model)
    if statement is None:
        table = _table(model)
        earlier = table.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                earlier.c.destination == table.c.destination,
                earlier.c.ordering_key == table.c.ordering_key,
                earlier.c.id < table.c.id,
                earlier.c.delivered_at.is_(None),
                earlier.c.dead_at.is_(None),
            )
            .exists()
        )
        later = table.alias("later")
        followed = (
            select(later.c.id)
            .where(
                later.c.destination == table.c.destination,
                later.c.ordering_key == table.c.ordering_key,
                later.c.id > table.c.id,
                later.c.delivered_at.is_(None),
                later.c.dead_at.is_(None),
            )
            .exists()
            .label("followed")
        )
        columns: list[Any] = [table.c[name] for name in _CLAIMED_COLUMNS]
        claim: Select[Any] = (
            select(*columns, followed)
            .where(
                table.c.delivered_at.is_(None),
                table.c.dead_at.is_(None),
                table.c.available_at <= func.now(),
                ~blocked,
            )
            .order_by(table.c.id)
            .limit(bindparam("claim_limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )
        statement = _CLAIM[model] = claim
    return statement


_WRITE_BACK: dict[type[OutboxMixin], Update] = {}


def write_back_statement(model: type[OutboxMixin]) -> Update:
    """`UPDATE` of a pass's rows to what the relay made of them (`OutboxRow`: its tries, and
    delivered, retried or parked), from one array per column: one statement for a pass, where
    the ORM's flush sent one `UPDATE` per row (three to five per missed call). A payload
    is written only where the relay replaced it (`written_payloads` null elsewhere)."""
    statement = _WRITE_BACK.get(model)
    if statement is None:
        table = _table(model)
        written = (
            func.unnest(
                bindparam("written_ids", type_=ARRAY(BigInteger)),
                bindparam("written_attempts", type_=ARRAY(Integer)),
                bindparam("written_errors", type_=ARRAY(Text)),
                bindparam("written_available_at", type_=ARRAY(DateTime(timezone=True))),
                bindparam("written_delivered_at", type_=ARRAY(DateTime(timezone=True))),
                bindparam("written_dead_at", type_=ARRAY(DateTime(timezone=True))),
                # JSON as text, as `insert_rows` writes it (a jsonb array needs a codec).
                bindparam("written_payloads", type_=ARRAY(Text)),
            )
            .table_valued(
                "id", "attempts", "last_error", "available_at", "delivered_at", "dead_at", "payload"
            )
            .render_derived(name="written")
        )
        statement = _WRITE_BACK[model] = (
            table.update()
            .where(table.c.id == written.c.id)
            .values(
                attempts=written.c.attempts,
                last_error=written.c.last_error,
                available_at=written.c.available_at,
                delivered_at=written.c.delivered_at,
                dead_at=written.c.dead_at,
                payload=func.coalesce(cast(written.c.payload, JSONB), table.c.payload),
            )
        )
    return statement


def write_back_params(rows: Sequence[OutboxRow]) -> dict[str, Any]:
    """The parameters of `write_back_statement` for `rows`."""
    return {
        "written_ids": [row.id for row in rows],
        "written_attempts": [row.attempts for row in rows],
        "written_errors": [row.last_error for row in rows],
        "written_available_at": [row.available_at for row in rows],
        "written_delivered_at": [row.delivered_at for row in rows],
        "written_dead_at": [row.dead_at for row in rows],
        "written_payloads": [dumps(row.payload).decode() if row.redacted else None for row in rows],
    }


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry | None, source: str) -> None:
        self.delivered = Counter(
            "ringback_outbox_delivered_total",
            "Outbox rows acknowledged by their destination.",
            ["source", "destination"],
            registry=registry,
        )
        self.failures = Counter(
            "ringback_outbox_failures_total",
            "Failed delivery attempts (kind: transient or permanent).",
            ["source", "destination", "kind"],
            registry=registry,
        )
        self.backlog = Gauge(
            "ringback_outbox_backlog",
            "Rows waiting for delivery.",
            ["source"],
            registry=registry,
        )
        self.lag = Gauge(
            "ringback_outbox_lag_seconds",
            "Age of the oldest row waiting for delivery.",
            ["source"],
            registry=registry,
        )
        self.source = source


def _headers(idempotency_key: str) -> dict[str, str]:
    # The bodies are encoded here by orjson (`dumps`), not by httpx's `json=` (the standard
    # library's encoder, several times slower on a batch of events).
    headers = {"Idempotency-Key": idempotency_key, "content-type": "application/json"}
    traceparent = current_traceparent()
    if traceparent:
        # A client of our own sends its client span's instead; either continues the trace.
        headers["traceparent"] = traceparent
    return headers


@dataclass(frozen=True)
class BatchRoute:
    """Rows bound for `path` may go together to `batch_path` as `{field: [payload, ...]}`.

    The peer's batch endpoint must be as idempotent per item as the single one, answer 2xx
    only when every item is stored, and refuse the whole batch otherwise.
    """

    path: str
    batch_path: str
    field: str
    max_items: int
    # A running relay lets these rows gather until the oldest waiting is this old, so that
    # the rows of the calls after it join its batch: for a peer off the customer's path
    # (history), where half a second is nothing to an agent and a batch request costs
    # both sides about as much as a row. A backlog (a full pass) goes at once.
    gather_seconds: float = 0.0


# Deliveries in flight at once, per relay. A batch is a hundred rows; posting them all at once
# only queued them at the peer (whose pool has ten database connections) and made our HTTP
# pool, which checks every connection on every request, a hundred connections large.
DELIVERY_CONCURRENCY = 8
# How long a woken relay lets rows gather before its pass. Each pass is a transaction and a
# request per peer whatever its size, and rows come a few per call (each a NOTIFY): at 30
# calls/s, passing per row cost the worker and history most of their CPU per call, where
# one pass per this interval carries a batch. It adds at most this to a row's delivery.
BATCH_LINGER_SECONDS = 0.05


class OutboxRelay:
    """Delivers one service's outbox to its peers."""

    def __init__(
        self,
        *,
        model: type[OutboxMixin],
        session_factory: async_sessionmaker[AsyncSession],
        clients: Mapping[str, httpx.AsyncClient],
        listen_dsn: str | None = None,
        batch_size: int = 100,
        concurrency: int = DELIVERY_CONCURRENCY,
        poll_seconds: float = 1.0,
        registry: CollectorRegistry | None = None,
        source: str = "outbox",
        redact_delivered: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        batch_routes: Mapping[str, BatchRoute] | None = None,
        linger_seconds: float = BATCH_LINGER_SECONDS,
    ) -> None:
        """`batch_routes`: by destination, the one path whose rows may be sent together."""
        self.model = model
        self.sessions = session_factory
        self.clients = clients
        self.listen_dsn = listen_dsn
        self.batch_size = batch_size
        self._sending = asyncio.Semaphore(concurrency)
        self.poll_seconds = poll_seconds
        self.metrics = RelayMetrics(registry, source)
        # A payload that carries personal data (an erasure request) need not outlive delivery.
        self.redact_delivered = redact_delivered
        self.batch_routes = dict(batch_routes or {})
        self.linger_seconds = linger_seconds
        self._wake = asyncio.Event()
        # What the NOTIFYs since the last pass named (`notified_destinations`); None: any.
        self._woken_for: set[str] | None = set()
        self._gauges_due = 0.0
        # When the first rows held back to gather (`BatchRoute.gather_seconds`) are due, and
        # their destinations, when a pass held rows back and had nothing else to send.
        self._gathering_until = math.inf
        self._only_gathering: frozenset[str] = frozenset()
        # Whether the last pass settled a row another waited on (`run_once`); a subclass
        # that claims its own way leaves it set, and looks again after every pass that sent.
        self._followers_freed = True

    async def run_once(self, *, gather: bool = False) -> int:
        """Deliver one batch; return how many rows were acknowledged.

        `gather`: rows of a route with `gather_seconds` wait while the oldest of them is
        younger (`run` passes it; a single pass, as an operator's or a test's, sends all).
        """
        async with self.sessions() as session:
            claimed = await fast_sql.fetch(
                session,
                fast_sql.compiled(claim_statement(self.model)),
                {"claim_limit": self.batch_size},
            )
            if not claimed:
                return 0
            due = [OutboxRow(*row) for row in claimed]
            rows = due
            if gather and len(due) < self.batch_size:
                rows = self._gathered(due)
                if not rows:
                    # Everything due is gathering: until it is due, a NOTIFY naming only
                    # these destinations brings nothing to send (`run`).
                    self._only_gathering = frozenset(row.destination for row in due)
            batches, singles = self._batches(rows)
            results = await asyncio.gather(
                *(self._deliver_batch(route, batch) for route, batch in batches),
                *(self._deliver(row) for row in singles),
            )
            # A row that waited on one this pass settled may go now, with no NOTIFY of its
            # own: `run` looks again at once only then.
            self._followers_freed = any(
                row.followed and (row.delivered_at is not None or row.dead_at is not None)
                for row in rows
            )
            if rows:
                await fast_sql.fetch(
                    session,
                    fast_sql.compiled(write_back_statement(self.model)),
                    write_back_params(rows),
                )
            await session.commit()
        return sum(results)

    def _gathered(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """`rows` less those of a route still gathering; notes when the first is due."""
        now = utcnow()
        oldest: dict[BatchRoute, datetime] = {}
        for row in rows:
            route = self.batch_routes.get(row.destination)
            if route is not None and route.gather_seconds > 0 and row.path == route.path:
                oldest[route] = min(oldest.get(route, row.created_at), row.created_at)
        waiting = {
            route
            for route, first in oldest.items()
            if (now - first).total_seconds() < route.gather_seconds
        }
        if not waiting:
            return rows
        due_in = min(
            route.gather_seconds - (now - oldest[route]).total_seconds() for route in waiting
        )
        self._gathering_until = min(self._gathering_until, time.monotonic() + max(due_in, 0))
        return [
            row
            for row in rows
            if (route := self.batch_routes.get(row.destination)) not in waiting
            or row.path != route.path
        ]

    def _batches(
        self, rows: Sequence[OutboxRow]
    ) -> tuple[list[tuple[BatchRoute, list[OutboxRow]]], list[OutboxRow]]:
        """Split a pass into batches (two rows or more for one batch route) and single rows."""
        grouped: dict[str, list[OutboxRow]] = {}
        singles: list[OutboxRow] = []
        for row in rows:
            route = self.batch_routes.get(row.destination)
            if route is not None and row.path == route.path:
                grouped.setdefault(row.destination, []).append(row)
            else:
                singles.append(row)
        batches: list[tuple[BatchRoute, list[OutboxRow]]] = []
        for destination, group in grouped.items():
            route = self.batch_routes[destination]
            if len(group) == 1:
                singles.extend(group)
                continue
            for start in range(0, len(group), route.max_items):
                batches.append((route, group[start : start + route.max_items]))
        return batches, singles

    async def _deliver_batch(self, route: BatchRoute, rows: list[OutboxRow]) -> int:
        """Deliver rows in one request; refused as a whole, row by row instead."""
        async with self._sending:
            delivered = await self._attempt_batch(route, rows)
        if delivered is not None:
            return delivered
        # Not counted as a try: each row now gets its own, and its own answer.
        for row in rows:
            row.attempts -= 1
        results = await asyncio.gather(*(self._deliver(row) for row in rows))
        return sum(results)

    async def _attempt_batch(self, route: BatchRoute, rows: list[OutboxRow]) -> int | None:
        """One request for `rows`: how many were delivered; None if refused as a whole (4xx)."""
        destination = rows[0].destination
        client = self.clients.get(destination)
        if client is None:
            for row in rows:
                self._park(row, f"no client configured for destination {destination!r}")
            return 0
        traces = [trace for row in rows if (trace := parse_traceparent(row.traceparent))]
        with start_span(
            f"outbox.deliver {destination}",
            kind=SpanKind.PRODUCER,
            parent=traces[0] if traces else None,
            root=True,
            bind_logs=True,
            # The other rows' traces, so that the delivery of each event can be found.
            links=traces[1:],
            attributes={
                "outbox.source": self.metrics.source,
                "outbox.destination": destination,
                "outbox.batch_size": len(rows),
            },
        ) as span:
            for row in rows:
                row.attempts += 1
            headers = _headers(f"outbox-{rows[0].id}-{rows[-1].id}-{len(rows)}")
            body = {route.field: [row.payload for row in rows]}
            try:
                response = await client.post(route.batch_path, content=dumps(body), headers=headers)
            except httpx.HTTPError as exc:
                for row in rows:
                    self._retry(row, f"{type(exc).__name__}: {exc}"[:500])
                span.set_status(StatusCode.ERROR)
                return 0
            if response.is_success:
                for row in rows:
                    self._delivered(row)
                return len(rows)
            span.set_status(StatusCode.ERROR)
            if response.status_code in (408, 425, 429) or response.status_code >= 500:
                for row in rows:
                    self._retry(row, f"HTTP {response.status_code}: {response.text[:400]}")
                return 0
            return None

    async def _deliver(self, row: OutboxRow) -> int:
        """Deliver one row as a span of the trace that wrote it (a new trace if it has none)."""
        async with self._sending:  # outside the span: waiting for a turn is not delivering
            return await self._deliver_now(row)

    async def _deliver_now(self, row: OutboxRow) -> int:
        with start_span(
            f"outbox.deliver {row.destination}",
            kind=SpanKind.PRODUCER,
            parent=parse_traceparent(row.traceparent),
            root=True,
            bind_logs=True,
            attributes={
                "outbox.source": self.metrics.source,
                "outbox.destination": row.destination,
                "outbox.id": row.id,
                "outbox.attempt": row.attempts + 1,
            },
        ) as span:
            delivered = await self._attempt(row)
            if span.is_recording():
                span.set_attribute("outbox.delivered", bool(delivered))
                if not delivered:
                    span.set_status(StatusCode.ERROR)
            return delivered

    async def _attempt(self, row: OutboxRow) -> int:
        client = self.clients.get(row.destination)
        row.attempts += 1
        if client is None:
            self._park(row, f"no client configured for destination {row.destination!r}")
            return 0
        headers = _headers(f"outbox-{row.id}")
        try:
            response = await client.post(row.path, content=dumps(row.payload), headers=headers)
        except httpx.HTTPError as exc:
            self._retry(row, f"{type(exc).__name__}: {exc}"[:500])
            return 0
        if response.is_success:
            self._delivered(row)
            return 1
        error = f"HTTP {response.status_code}: {response.text[:400]}"
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            self._retry(row, error)
        else:
            self._park(row, error)
        return 0

    def _delivered(self, row: OutboxRow) -> None:
        row.delivered_at = utcnow()
        row.last_error = None
        if self.redact_delivered is not None:
            row.payload = self.redact_delivered(row.payload)
            row.redacted = True
        self.metrics.delivered.labels(self.metrics.source, row.destination).inc()

    def _retry(self, row: OutboxRow, error: str) -> None:
        row.last_error = error
        row.available_at = utcnow() + timedelta(seconds=backoff_seconds(row.attempts, cap=60))
        self.metrics.failures.labels(self.metrics.source, row.destination, "transient").inc()
        log.warning(
            "outbox.delivery.retry",
            outbox_id=row.id,
            destination=row.destination,
            attempts=row.attempts,
            error=error[:200],
        )

    def _park(self, row: OutboxRow, error: str) -> None:
        row.last_error = error
        row.dead_at = utcnow()
        self.metrics.failures.labels(self.metrics.source, row.destination, "permanent").inc()
        log.error(
            "outbox.delivery.dead", outbox_id=row.id, destination=row.destination, error=error
        )

    async def refresh_gauges(self) -> None:
        model = self.model
        async with self.sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(model.created_at)).where(
                        model.delivered_at.is_(None), model.dead_at.is_(None)
                    )
                )
            ).one()
        self.metrics.backlog.labels(self.metrics.source).set(count)
        lag = (utcnow() - oldest).total_seconds() if oldest else 0.0
        self.metrics.lag.labels(self.metrics.source).set(lag)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; wake on NOTIFY, poll as a fallback.

        The LISTEN connection is not pooled, so nothing else notices when it dies (a database
        restart, a failover): it is checked on every pass and opened again, with backoff, while
        polling carries on meanwhile.
        """
        listener: asyncpg.Connection | None = None
        listen_attempts = 0
        listen_due = 0.0
        try:
            while not stop.is_set():
                if self.listen_dsn and (listener is None or listener.is_closed()):
                    if time.monotonic() >= listen_due:
                        listener = await self._listen(quiet=listen_attempts > 0)
                        listen_attempts = 0 if listener is not None else listen_attempts + 1
                        # A connect attempt is cheap: try again within seconds of a restart.
                        listen_due = time.monotonic() + backoff_seconds(
                            max(listen_attempts, 1), cap=5
                        )
                # Cleared before the pass, not after: a row committed while it runs wakes the
                # next one rather than waiting for the poll.
                self._wake.clear()
                self._woken_for = set()
                self._gathering_until = math.inf
                self._only_gathering = frozenset()
                try:
                    delivered = await self.run_once(gather=True)
                    # Counting the backlog is a query of its own: a few times a minute is enough.
                    if time.monotonic() >= self._gauges_due:
                        self._gauges_due = time.monotonic() + GAUGE_INTERVAL_SECONDS
                        await self.refresh_gauges()
                except Exception as exc:
                    # The database may be restarting; keep the relay alive and try again.
                    if database_unavailable(exc):
                        log.warning("outbox.relay.database_unavailable", error=type(exc).__name__)
                    else:
                        log.exception("outbox.relay.error")
                    delivered = 0
                if delivered >= self.batch_size:
                    continue  # a backlog: the next batch at once
                if delivered and self._followers_freed:
                    # Look again (a row whose key waited for one delivered now has no NOTIFY
                    # of its own), once the rows written meanwhile have gathered. When no row
                    # waited, that pass found nothing: about one pass in two of the callback
                    # events' relay (bench/RESULTS.md, "fourteenth").
                    await self._linger(stop)
                    continue
                if not delivered:
                    # Once per poll interval while nothing is due: visible when debugging a
                    # relay that seems stuck, silent in a developer's terminal.
                    log.debug("outbox.relay.idle", source=self.metrics.source)
                if await self._wait(stop):
                    await self._linger(stop)
        finally:
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener.close(), timeout=2)

    async def _wait(self, stop: asyncio.Event) -> bool:
        """Wait for a NOTIFY, the poll, or rows held back to gather (due before the poll);
        True when woken by a NOTIFY.

        While every row due is gathering, a NOTIFY that names only their destinations adds
        rows to the gathering: the pass waits until it is due instead. The relay of callback
        events woke at each of them (several a call) to claim rows it let go again: about
        two passes in three found nothing to send (bench/RESULTS.md, "fourteenth")."""
        while True:
            gathering = self._gathering_until - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(self.poll_seconds, gathering))):
                    await first_set(self._wake, stop)
            if not self._wake.is_set() or stop.is_set():
                return False
            woken_for = self._woken_for
            if not (
                woken_for
                and woken_for <= self._only_gathering
                and time.monotonic() < self._gathering_until
            ):
                return True
            self._wake.clear()
            self._woken_for = set()

    def _on_notify(self, *args: Any) -> None:
        """A NOTIFY on the outbox's channel: note what it names, and wake the loop."""
        payload = str(args[3]) if len(args) > 3 else ""
        named = notified_destinations(payload)
        if named is None or self._woken_for is None:
            self._woken_for = None
        else:
            self._woken_for |= named
        self._wake.set()

    async def _linger(self, stop: asyncio.Event) -> None:
        if self.linger_seconds > 0 and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.linger_seconds)

    async def _listen(self, *, quiet: bool = False) -> asyncpg.Connection | None:
        if not self.listen_dsn:
            return None
        conn: asyncpg.Connection | None = None
        try:
            # Named, so `pg_stat_activity` tells an operator whose LISTEN this is.
            connection = await asyncio.wait_for(
                asyncpg.connect(
                    self.listen_dsn,
                    server_settings={"application_name": f"ringback.{self.metrics.source}.listen"},
                ),
                timeout=10,
            )
            conn = connection
            await connection.add_listener(channel_for(self.model), self._on_notify)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if conn is not None:
                conn.terminate()
            if not quiet:
                log.warning("outbox.relay.listen_unavailable")
            return None
        log.info("outbox.relay.listening")
        return conn
