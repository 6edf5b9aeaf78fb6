"""All of history's SQL: customers, identities, events and the activity roll-up."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, delete, func, literal, literal_column, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.history.models import Customer, CustomerActivity, CustomerIdentity, Event
from shared.db import utcnow

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
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:ns, h) FROM ("
            " SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k"
            " ORDER BY h) AS ordered"
        ),
        {"ns": _LOCK_NAMESPACE, "keys": sorted(keys)},
    )


async def existing_events(session: AsyncSession, ids: Collection[str]) -> dict[str, Event]:
    """Stored events among `ids`, by id."""
    if not ids:
        return {}
    rows = await session.scalars(select(Event).where(Event.id.in_(list(ids))))
    return {row.id: row for row in rows}


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> Event | None:
    """Store an event; None when its id is already taken (the first one wins)."""
    stmt = (
        insert(Event)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Event.id])
        .returning(Event)
    )
    result = await session.scalars(stmt, execution_options={"populate_existing": True})
    return result.one_or_none()


async def bump_activity(
    session: AsyncSession,
    *,
    customer_id: str,
    channel: str,
    direction: str,
    type_: str,
    occurred_at: datetime,
) -> None:
    """Count one more event in the customer's activity roll-up."""
    stmt = insert(CustomerActivity).values(
        customer_id=customer_id,
        channel=channel,
        direction=direction,
        type=type_,
        count=1,
        last_occurred_at=occurred_at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[
            CustomerActivity.customer_id,
            CustomerActivity.channel,
            CustomerActivity.direction,
            CustomerActivity.type,
        ],
        set_={
            "count": CustomerActivity.count + 1,
            "last_occurred_at": func.greatest(
                CustomerActivity.last_occurred_at, stmt.excluded.last_occurred_at
            ),
        },
    )
    await session.execute(stmt)


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
    rows = await session.execute(
        select(CustomerIdentity.kind, CustomerIdentity.value, CustomerIdentity.customer_id).where(
            tuple_(CustomerIdentity.kind, CustomerIdentity.value).in_(list(pairs))
        )
    )
    return {(kind, value): customer_id for kind, value, customer_id in rows}


async def customer_id_by_external_id(session: AsyncSession, external_id: str) -> str | None:
    """The oldest customer carrying `external_id`, merged or not."""
    return await session.scalar(
        select(Customer.id)
        .where(Customer.external_id == external_id)
        .order_by(Customer.created_at, Customer.id)
        .limit(1)
    )


async def lock_customers(session: AsyncSession, ids: Collection[str]) -> list[Customer]:
    """Load and row-lock customers, in id order so concurrent lockers queue rather than deadlock."""
    if not ids:
        return []
    rows = await session.scalars(
        select(Customer)
        .where(Customer.id.in_(sorted(ids)))
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
        select(Customer).where(Customer.id.in_(list(ids))).order_by(Customer.created_at)
    )
    return list(rows)


async def add_customer(session: AsyncSession, customer: Customer) -> Customer:
    session.add(customer)
    await session.flush()
    return customer


async def add_identities(
    session: AsyncSession, *, customer_id: str, pairs: Iterable[tuple[str, str]]
) -> None:
    """Attach identities to a customer; ones already known stay where they are."""
    now = utcnow()
    values = [
        {"kind": k, "value": v, "customer_id": customer_id, "created_at": now} for k, v in pairs
    ]
    if not values:
        return
    await session.execute(insert(CustomerIdentity).values(values).on_conflict_do_nothing())


async def identities_of(
    session: AsyncSession, customer_ids: Collection[str]
) -> dict[str, list[tuple[str, str]]]:
    """Each customer's (kind, value) identities, in the order they were learned."""
    out: dict[str, list[tuple[str, str]]] = {cid: [] for cid in customer_ids}
    if not customer_ids:
        return out
    rows = await session.execute(
        select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
        .where(CustomerIdentity.customer_id.in_(list(customer_ids)))
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


async def timeline(
    session: AsyncSession,
    *,
    customer_id: str,
    channel: str | None,
    type_: str | None,
    before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Event]:
    """Up to `limit` events newest first by (occurred_at, seq), strictly past `after`."""
    stmt = select(Event).where(Event.customer_id == customer_id)
    if channel is not None:
        stmt = stmt.where(Event.channel == channel)
    if type_ is not None:
        stmt = stmt.where(Event.type == type_)
    if before is not None:
        stmt = stmt.where(Event.occurred_at < before)
    if after is not None:
        stmt = stmt.where(tuple_(Event.occurred_at, Event.seq) < tuple_(*after))
    stmt = stmt.order_by(Event.occurred_at.desc(), Event.seq.desc()).limit(limit)
    return list(await session.scalars(stmt))


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
