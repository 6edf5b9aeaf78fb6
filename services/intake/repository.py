"""All of intake's SQL."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import (
    Select,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.intake.models import Base, CallLeg, Erasure, Inbound, IntakeOutbox, WebhookReceipt
from shared import fast_sql, outbox
from shared.db import driver_connection, utcnow
from shared.ids import new_id
from shared.jsonutil import dumps
from shared.outbox import ERASED_PAYLOAD
from shared.vocabulary import InboundStatus


async def insert_inbound(session: AsyncSession, values: dict[str, Any]) -> str | None:
    """Insert an inbound row; None when the provider's id was seen before (a duplicate)."""
    values = {"id": new_id(), **values}
    statement = (
        insert(Inbound)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[Inbound.provider, Inbound.external_id],
            index_where=Inbound.external_id.is_not(None),
        )
        .returning(Inbound.id)
    )
    inserted: str | None = await session.scalar(statement)
    return inserted


async def find_by_external_id(session: AsyncSession, provider: str, external_id: str) -> str | None:
    found: str | None = await session.scalar(
        select(Inbound.id).where(Inbound.provider == provider, Inbound.external_id == external_id)
    )
    return found


async def get_inbound(
    session: AsyncSession, inbound_id: str, *, lock: bool = False
) -> Inbound | None:
    statement = select(Inbound).where(Inbound.id == inbound_id)
    if lock:
        statement = statement.with_for_update()
    row: Inbound | None = await session.scalar(statement)
    return row


async def find_inbound(session: AsyncSession, provider: str, external_id: str) -> Inbound | None:
    row: Inbound | None = await session.scalar(
        select(Inbound).where(Inbound.provider == provider, Inbound.external_id == external_id)
    )
    return row


async def update_inbound(session: AsyncSession, inbound_id: str, **values: Any) -> None:
    await session.execute(update(Inbound).where(Inbound.id == inbound_id).values(**values))


async def list_inbound(
    session: AsyncSession,
    *,
    status: str | None,
    provider: str | None,
    limit: int,
    before_id: str | None,
) -> Sequence[Inbound]:
    """Newest first (ids are UUIDv7, so id order is arrival order)."""
    statement = select(Inbound).order_by(Inbound.id.desc()).limit(limit)
    if status:
        statement = statement.where(Inbound.status == status)
    if provider:
        statement = statement.where(Inbound.provider == provider)
    if before_id:
        statement = statement.where(Inbound.id < before_id)
    return (await session.scalars(statement)).all()


async def claim_receipt(session: AsyncSession, webhook_id: str, inbound_id: str) -> str:
    """Record a `webhook-id`; return the inbound id of its first delivery (maybe this one)."""
    inserted = await session.scalar(
        insert(WebhookReceipt)
        .values(webhook_id=webhook_id, inbound_id=inbound_id, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=[WebhookReceipt.webhook_id])
        .returning(WebhookReceipt.inbound_id)
    )
    if inserted is not None:
        return str(inserted)
    first = await session.scalar(
        select(WebhookReceipt.inbound_id).where(WebhookReceipt.webhook_id == webhook_id)
    )
    return str(first)


async def point_receipt(session: AsyncSession, webhook_id: str, inbound_id: str) -> None:
    await session.execute(
        update(WebhookReceipt)
        .where(WebhookReceipt.webhook_id == webhook_id)
        .values(inbound_id=inbound_id)
    )


async def open_leg(session: AsyncSession, provider: str, call_id: str) -> tuple[CallLeg, bool]:
    """The leg, created when unknown, locked until the transaction ends."""
    now = utcnow()
    created = await session.scalar(
        insert(CallLeg)
        .values(provider=provider, call_id=call_id, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[CallLeg.provider, CallLeg.call_id])
        .returning(CallLeg.call_id)
    )
    leg = await session.scalar(
        select(CallLeg)
        .where(CallLeg.provider == provider, CallLeg.call_id == call_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert leg is not None
    return leg, created is not None


async def get_erasure(session: AsyncSession, erasure_id: str) -> Erasure | None:
    return await session.get(Erasure, erasure_id)


async def claim_erasure(session: AsyncSession, erasure_id: str, requested_at: datetime) -> bool:
    """True when this erasure id is new (and now ours until commit)."""
    inserted = await session.scalar(
        insert(Erasure)
        .values(id=erasure_id, requested_at=requested_at, completed_at=utcnow(), counts={})
        .on_conflict_do_nothing(index_elements=[Erasure.id])
        .returning(Erasure.id)
    )
    return inserted is not None


def _body_text() -> Any:
    # bytea as text for searching: non-ASCII bytes become \ooo escapes, which is fine for
    # finding digits and ASCII email addresses.
    return func.lower(func.encode(Inbound.body, "escape"))


async def erase_inbound(
    session: AsyncSession,
    *,
    phones: Sequence[str],
    phone_patterns: Sequence[str],
    emails: Sequence[str],
    email_forms: Sequence[str],
) -> int:
    """Strip personal data from every inbound row that names one of these people."""
    conditions: list[Any] = []
    if phones:
        conditions.append(Inbound.phone.in_(phones))
    if emails:
        conditions.append(Inbound.email.in_(emails))
    body = func.encode(Inbound.body, "escape")
    conditions.extend(body.op("~*")(pattern) for pattern in phone_patterns)
    conditions.extend(func.strpos(_body_text(), form) > 0 for form in email_forms)
    if not conditions:
        return 0
    result = await session.execute(
        update(Inbound)
        .where(or_(*conditions))
        .values(
            body=b"",
            body_truncated=False,
            headers={},
            phone=None,
            email=None,
            query=None,
            summary={"erased": True},
            erased_at=utcnow(),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_call_legs(
    session: AsyncSession, *, phones: Sequence[str], phone_patterns: Sequence[str]
) -> int:
    conditions: list[Any] = []
    if phones:
        conditions.append(CallLeg.phone.in_(phones))
    for pattern in phone_patterns:
        conditions.extend(column.op("~*")(pattern) for column in (CallLeg.caller, CallLeg.callee))
    if not conditions:
        return 0
    result = await session.execute(
        update(CallLeg)
        .where(or_(*conditions))
        # A voicemail's words are the caller's; its recording is deleted by callback.
        .values(caller=None, callee=None, phone=None, transcript=None, recording_url=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def erase_outbox(session: AsyncSession, *, needles: Sequence[str]) -> int:
    """Empty the payloads that mention these people; undelivered ones are withdrawn."""
    if not needles:
        return 0
    text = func.lower(cast(IntakeOutbox.payload, Text))
    mentions = or_(
        *(func.strpos(text, needle) > 0 for needle in needles),
        IntakeOutbox.ordering_key.in_(needles),
    )
    pending = IntakeOutbox.delivered_at.is_(None) & IntakeOutbox.dead_at.is_(None)
    # Not delivered yet: withdrawn (parked), since the person asked to be forgotten.
    await session.execute(
        update(IntakeOutbox)
        .where(mentions, pending)
        .values(dead_at=utcnow(), last_error="withdrawn: personal data erased")
    )
    emptied = await session.execute(
        # The ordering key is the customer's number or address: it goes too. These rows are
        # delivered or withdrawn, so they hold nothing up.
        update(IntakeOutbox).where(mentions).values(payload=ERASED_PAYLOAD, ordering_key="erased")
    )
    return int(getattr(emptied, "rowcount", 0) or 0)


async def record_erasure(session: AsyncSession, erasure_id: str, counts: dict[str, int]) -> None:
    await session.execute(
        update(Erasure).where(Erasure.id == erasure_id).values(counts=counts, completed_at=utcnow())
    )


async def purge(
    session: AsyncSession,
    *,
    receipts_before: datetime,
    rejected_before: datetime,
    legs_before: datetime,
) -> dict[str, int]:
    """Housekeeping: forget old webhook ids, rejected payloads and finished call legs."""
    counts: dict[str, int] = {}
    for name, statement in (
        ("receipts", delete(WebhookReceipt).where(WebhookReceipt.received_at < receipts_before)),
        (
            "rejected",
            delete(Inbound).where(
                Inbound.status.in_((InboundStatus.REJECTED, InboundStatus.REPLAYED)),
                Inbound.received_at < rejected_before,
            ),
        ),
        ("call_legs", delete(CallLeg).where(CallLeg.updated_at < legs_before)),
    ):
        result = await session.execute(statement)
        counts[name] = int(getattr(result, "rowcount", 0) or 0)
    return counts


# --- a stateless provider's delivery, in one statement -----------------------------------


@dataclass(frozen=True, slots=True)
class NewCall:
    """Everything one delivery stores, decided before the database is touched."""

    delivery_id: str | None
    inbound: dict[str, Any]  # `service.inbound_values`: every column of a new inbound row
    forwards: list[dict[str, Any]]  # `shared.outbox.row_values` of each outbox row


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_inbound, _receipts = _table(Inbound), _table(WebhookReceipt)
# What a new inbound row sets: every column but the one erasure fills in later.
INBOUND_COLUMNS = tuple(column.name for column in _inbound.columns if column.name != "erased_at")
_INBOUND_KEYS = tuple((name, f"inbound_{name}") for name in INBOUND_COLUMNS)
_INBOUND_JSON_KEYS = tuple(
    (name, key) for name, key in _INBOUND_KEYS if isinstance(_inbound.c[name].type, JSONB)
)


def _store_call_statement() -> Select[Any]:
    """The statement `store_call` runs, built from the tables' own declarations.

    One statement, so one implicit transaction and one round trip. A webhook-id already
    committed writes nothing (`earlier` is its first delivery). Otherwise the inbound row is
    inserted unless the call is already stored, its outbox rows and NOTIFY only with it, and
    the receipt points at whichever row is the call's. When a concurrent delivery of the
    same webhook-id or call is still being committed, the statement cannot see its row: then
    the receipt's insert fails (unique, or NOT NULL for want of a row to point at), which
    undoes the whole statement.
    """
    given = {
        name: bindparam(f"inbound_{name}", type_=_inbound.c[name].type) for name in INBOUND_COLUMNS
    }
    delivery_id = bindparam("delivery_id", type_=_receipts.c.webhook_id.type)
    seen = select(_receipts.c.inbound_id).where(_receipts.c.webhook_id == delivery_id).cte("seen")
    unseen = ~exists(select(seen.c.inbound_id))
    new_inbound = (
        insert(_inbound)
        .from_select(list(INBOUND_COLUMNS), select(*given.values()).where(unseen))
        .on_conflict_do_nothing(
            index_elements=[_inbound.c.provider, _inbound.c.external_id],
            index_where=_inbound.c.external_id.is_not(None),
        )
        .returning(_inbound.c.id)
        .cte("new_inbound")
    )
    existing = (
        select(_inbound.c.id)
        .where(
            _inbound.c.provider == given["provider"],
            _inbound.c.external_id == given["external_id"],
        )
        .cte("existing")
    )
    the_call = func.coalesce(
        select(new_inbound.c.id).scalar_subquery(), select(existing.c.id).scalar_subquery()
    )
    new_receipt = (
        insert(_receipts)
        .from_select(
            ["webhook_id", "inbound_id", "received_at"],
            select(delivery_id, the_call, given["received_at"]).where(
                delivery_id.is_not(None), unseen
            ),
        )
        .returning(_receipts.c.inbound_id)
        .cte("new_receipt")
    )
    new_outbox = outbox.insert_rows(IntakeOutbox, when=exists(select(new_inbound.c.id))).cte(
        "new_outbox"
    )
    notify = outbox.notify_once(IntakeOutbox, new_outbox).cte("notify")
    return select(
        select(new_inbound.c.id).scalar_subquery().label("inserted"),
        select(seen.c.inbound_id).scalar_subquery().label("earlier"),
        select(new_receipt.c.inbound_id).scalar_subquery().label("receipt_for"),
        select(existing.c.id).scalar_subquery().label("existing"),
        select(func.count()).select_from(notify).scalar_subquery().label("notified"),
    )


# Compiled once per process, and run on asyncpg directly (whose statement cache prepares it
# once per connection): the hot path skips SQLAlchemy's per-execution work (cache lookup,
# parameter and result processing), as the hand-written statement it replaced did.
@functools.cache
def _store_call_sql() -> fast_sql.Statement:
    return fast_sql.Statement.of(_store_call_statement())


@functools.cache
def _first_of_call_sql() -> fast_sql.Statement:
    return fast_sql.Statement.of(
        select(_inbound.c.id).where(
            _inbound.c.provider == bindparam("provider", type_=_inbound.c.provider.type),
            _inbound.c.external_id == bindparam("external_id", type_=_inbound.c.external_id.type),
        )
    )


def _store_call_params(call: NewCall) -> dict[str, Any]:
    params: dict[str, Any] = {"delivery_id": call.delivery_id}
    for name, key in _INBOUND_KEYS:
        params[key] = call.inbound[name]
    for name, key in _INBOUND_JSON_KEYS:
        # Without SQLAlchemy's parameter processing jsonb goes as JSON text, as the engine's
        # connections encode it.
        params[key] = dumps(call.inbound[name]).decode()
    params.update(outbox.rows_params(IntakeOutbox, call.forwards))
    return params


async def store_call(engine: AsyncEngine, call: NewCall) -> tuple[str, bool] | None:
    """Store `call` in one statement: (its inbound id, True), or (the first's, False).

    False when the webhook-id was seen before (a replay) or the call was (a redelivery): then
    nothing but the receipt of a new webhook-id is written, pointing at the call's first row.
    None when a concurrent delivery of the same webhook-id or call was being committed and
    nothing was written: the caller goes the general way, `ingest`.
    """
    values = call.inbound
    inbound_id: str = values["id"]
    statement = _store_call_sql()
    async with driver_connection(engine) as conn:
        try:
            args = statement.driver_args(_store_call_params(call))
            row = await conn.fetchrow(statement.text, *args)
        except (asyncpg.UniqueViolationError, asyncpg.NotNullViolationError):
            return None
        assert row is not None
        if row["inserted"] is not None:
            return inbound_id, True
        first = row["earlier"] or row["receipt_for"] or row["existing"]
        if first is None:
            # No webhook-id, and the call's first delivery committed while this one waited.
            lookup = _first_of_call_sql()
            first = await conn.fetchval(lookup.text, *lookup.driver_args(values))
        return str(first or ""), False
