"""The rules of the contact log: idempotent events, identity resolution, merges, profiles.

Services flush and never commit: the request's unit of work commits once, before the answer.
"""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.history import repository
from services.history.models import Customer, Event
from services.history.schemas import (
    CustomerOut,
    CustomerProfileOut,
    EventOut,
    OpenCallbackOut,
    RefOut,
)
from shared.contracts import Channel, CustomerRef, EventIn, Ref
from shared.db import utcnow
from shared.errors import BadRequest, NotFound, Unprocessable
from shared.ids import new_id
from shared.phone import normalize

# Callback lifecycle events and the status each implies when its data does not name one.
OPEN_CALLBACK_TYPES = {
    "callback_created": "pending",
    "callback_scheduled": "scheduled",
    "callback_claimed": "in_progress",
    "callback_attempted": "pending",
}
CLOSED_CALLBACK_TYPES = frozenset(
    {"callback_completed", "callback_failed", "callback_cancelled", "callback_expired"}
)
_MAX_MERGE_HOPS = 8


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as stored, and whether this call stored it (False: it was there already)."""

    event: Event
    created: bool


def identity_pairs(ref: CustomerRef, *, region: str) -> list[tuple[str, str]]:
    """The (kind, value) identities a customer reference carries, normalised."""
    pairs: list[tuple[str, str]] = []
    phone = normalize(ref.phone, region) if ref.phone else None
    if phone:
        pairs.append(("phone", phone))
    if ref.email:
        pairs.append(("email", str(ref.email).strip().lower()))
    return pairs


def _lock_names(event: EventIn, *, region: str) -> set[str]:
    names = {f"event:{event.id}"}
    names.update(f"{kind}:{value}" for kind, value in identity_pairs(event.customer, region=region))
    if event.customer.external_id:
        names.add(f"external:{event.customer.external_id}")
    return names


def _storage_problems(value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    """Where `value` holds something PostgreSQL cannot store (NUL, lone surrogate, NaN)."""
    if isinstance(value, str):
        if "\x00" in value:
            return [{"loc": loc, "msg": "NUL characters are not allowed"}]
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [{"loc": loc, "msg": "not valid Unicode text"}]
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [{"loc": loc, "msg": "numbers must be finite"}]
    if isinstance(value, dict):
        problems: list[dict[str, Any]] = []
        for key, item in value.items():
            problems += _storage_problems(key, [*loc, str(key)])
            problems += _storage_problems(item, [*loc, str(key)])
        return problems
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _storage_problems(item, [*loc, i])]
    return []


def check_storable(events: Sequence[EventIn], *, batch: bool) -> None:
    """Refuse, as a 422, events holding text or numbers PostgreSQL would reject."""
    problems: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        loc: list[str | int] = ["body", "events", index] if batch else ["body"]
        problems += _storage_problems(event.model_dump(mode="python"), loc)
    if problems:
        raise Unprocessable("The request did not pass validation.", extra={"errors": problems[:20]})


def _utc(value: datetime) -> datetime:
    # A time without an offset is taken as UTC, the API's own zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def record_events(
    *, session: AsyncSession, events: Sequence[EventIn], region: str
) -> list[Recorded]:
    """Store events idempotently by id, each resolved to one customer; results in input order.

    Every identity, external id and event id involved is advisory-locked first, in one global
    order, so concurrent first events for a new number make one customer and a repeat
    racing its original is answered with the original.
    """
    names: set[str] = set()
    for event in events:
        names |= _lock_names(event, region=region)
    await repository.lock_keys(session, names)
    stored = await repository.existing_events(session, {event.id for event in events})
    results: list[Recorded] = []
    for event in events:
        if event.id in stored:
            results.append(Recorded(stored[event.id], created=False))
            continue
        customer_id = await resolve_customer(
            session=session, ref=event.customer, region=region, cause=event
        )
        row = await _insert(session=session, event=event, customer_id=customer_id)
        if row is None:  # taken outside our locks (a different writer): the first one wins
            row = (await repository.existing_events(session, {event.id}))[event.id]
            results.append(Recorded(row, created=False))
        else:
            results.append(Recorded(row, created=True))
        stored[event.id] = row
    return results


async def record_event(*, session: AsyncSession, event: EventIn, region: str) -> Recorded:
    """Store one event idempotently by id."""
    (result,) = await record_events(session=session, events=[event], region=region)
    return result


async def _insert(*, session: AsyncSession, event: EventIn, customer_id: str) -> Event | None:
    """Insert one event and count it in the customer's activity; None if the id is taken."""
    occurred_at = _utc(event.occurred_at)
    row = await repository.insert_event(
        session,
        {
            "id": event.id,
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "received_at": utcnow(),
            "channel": event.channel,
            "direction": event.direction,
            "type": event.type,
            "subject_kind": event.subject.kind if event.subject else None,
            "subject_id": event.subject.id if event.subject else None,
            "actor_kind": event.actor.kind if event.actor else None,
            "actor_id": event.actor.id if event.actor else None,
            "summary": event.summary,
            "data": event.data,
        },
    )
    if row is not None:
        await repository.bump_activity(
            session,
            customer_id=customer_id,
            channel=event.channel,
            direction=event.direction,
            type_=event.type,
            occurred_at=occurred_at,
        )
    return row


async def _lock_live(session: AsyncSession, ids: set[str]) -> list[Customer]:
    """Row-lock the customers behind `ids`, following merges to the survivors."""
    for _ in range(_MAX_MERGE_HOPS):
        rows = await repository.lock_customers(session, ids)
        targets = {row.merged_into for row in rows if row.merged_into}
        if not targets:
            return rows
        ids = {row.id for row in rows if not row.merged_into} | targets
    raise RuntimeError("customer merge chain longer than expected")


async def resolve_customer(
    *, session: AsyncSession, ref: CustomerRef, region: str, cause: EventIn
) -> str:
    """The id of the one customer `ref` denotes: found, created, extended or merged.

    Phone numbers, emails and the integration's `external_id` each find a customer. When
    they find two or more, the event bridges them and they are merged into the oldest. A
    reference with none of them (a withheld number, a message without a reply address) gets
    a new anonymous customer of its own: the event is kept on a timeline, and nothing would
    ever link it to anyone else, so sharing one "unknown" customer would only mix strangers.
    """
    pairs = identity_pairs(ref, region=region)
    known = await repository.customer_ids_by_identity(session, pairs)
    candidates = set(known.values())
    if ref.external_id:
        by_external = await repository.customer_id_by_external_id(session, ref.external_id)
        if by_external:
            candidates.add(by_external)
    customers = await _lock_live(session, candidates)
    now = utcnow()
    if not customers:
        customer = Customer(
            id=new_id(),
            name=ref.name,
            external_id=ref.external_id,
            language=ref.language,
            created_at=now,
            updated_at=now,
        )
        await repository.add_customer(session, customer)
        await repository.add_identities(session, customer_id=customer.id, pairs=pairs)
        return customer.id

    customers.sort(key=lambda c: (c.created_at, c.id))
    survivor, losers = customers[0], customers[1:]
    changed = False
    for loser in losers:
        await _merge(session=session, survivor=survivor, loser=loser, cause=cause)
        changed = True
    missing = [pair for pair in pairs if pair not in known]
    if missing:
        await repository.add_identities(session, customer_id=survivor.id, pairs=missing)
        changed = True
    # Fill blanks only: events arrive out of order, so "newest name wins" would flap.
    for field in ("name", "external_id", "language"):
        if getattr(survivor, field) is None and getattr(ref, field) is not None:
            setattr(survivor, field, getattr(ref, field))
            changed = True
    if changed:
        survivor.updated_at = now
        await session.flush()
    return survivor.id


async def _merge(
    *, session: AsyncSession, survivor: Customer, loser: Customer, cause: EventIn
) -> None:
    """Merge `loser` into `survivor` and record it on the survivor's timeline."""
    await repository.merge_customer(session, loser_id=loser.id, survivor_id=survivor.id)
    for field in ("name", "external_id", "language"):
        if getattr(survivor, field) is None and getattr(loser, field) is not None:
            setattr(survivor, field, getattr(loser, field))
    channel: Channel = cause.channel
    merged = EventIn(
        id=new_id(),
        occurred_at=utcnow(),
        channel=channel,
        direction="internal",
        type="customer_merged",
        customer=CustomerRef(),
        subject=Ref(kind="customer", id=loser.id),
        actor=Ref(kind="system", id="history"),
        summary="Two customer records were merged: one contact named identities of both.",
        data={
            "survivor_id": survivor.id,
            "merged_customer_id": loser.id,
            "cause_event_id": cause.id,
        },
    )
    await _insert(session=session, event=merged, customer_id=survivor.id)


# Reading ---------------------------------------------------------------------------------


def _is_customer_id(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


async def live_customer(*, session: AsyncSession, customer_id: str) -> Customer:
    """The customer with this id, or the survivor it was merged into; NotFound otherwise."""
    customer = (
        await repository.get_customer(session, customer_id)
        if _is_customer_id(customer_id)
        else None
    )
    for _ in range(_MAX_MERGE_HOPS):
        if customer is None:
            raise NotFound("No customer has this id.")
        if customer.merged_into is None:
            return customer
        customer = await repository.get_customer(session, customer.merged_into)
    raise RuntimeError("customer merge chain longer than expected")


async def find_customers(
    *, session: AsyncSession, phone: str | None, email: str | None, region: str
) -> list[CustomerOut]:
    """Customers known by the phone number (any notation) or the email, merges followed."""
    pairs: list[tuple[str, str]] = []
    if phone is not None:
        e164 = normalize(phone, region)
        if e164 is None:
            raise Unprocessable(
                "The phone number is not valid.",
                extra={"errors": [{"loc": ["query", "phone"], "msg": "not a valid number"}]},
            )
        pairs.append(("phone", e164))
    if email is not None:
        pairs.append(("email", email.strip().lower()))
    owners = await repository.customer_ids_by_identity(session, pairs)
    live: dict[str, Customer] = {}
    for owner in owners.values():
        customer = await live_customer(session=session, customer_id=owner)
        live[customer.id] = customer
    return await _customers_out(session, list(live.values()))


async def _customers_out(session: AsyncSession, customers: list[Customer]) -> list[CustomerOut]:
    identities = await repository.identities_of(session, [c.id for c in customers])
    return [
        CustomerOut(
            id=c.id,
            name=c.name,
            external_id=c.external_id,
            language=c.language,
            phones=[v for k, v in identities[c.id] if k == "phone"],
            emails=[v for k, v in identities[c.id] if k == "email"],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in sorted(customers, key=lambda c: (c.created_at, c.id))
    ]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return _utc(parsed)


def _open_callback(event: Event) -> OpenCallbackOut | None:
    if event.type in CLOSED_CALLBACK_TYPES or event.subject_id is None:
        return None
    data = event.data if isinstance(event.data, dict) else {}
    status = data.get("status")
    agent_id = data.get("agent_id")
    if agent_id is None and event.type == "callback_claimed" and event.actor_kind == "agent":
        agent_id = event.actor_id
    return OpenCallbackOut(
        id=event.subject_id,
        status=status if isinstance(status, str) else OPEN_CALLBACK_TYPES[event.type],
        due_at=_parse_time(data.get("due_at")),
        agent_id=str(agent_id) if agent_id is not None else None,
        last_event_type=event.type,
        last_event_at=event.occurred_at,
    )


async def customer_profile(*, session: AsyncSession, customer_id: str) -> CustomerProfileOut:
    """The profile and where the customer's case stands, all read from the timeline."""
    customer = await live_customer(session=session, customer_id=customer_id)
    (base,) = await _customers_out(session, [customer])
    callbacks = await repository.latest_callback_events(
        session,
        customer_id=customer.id,
        types=[*OPEN_CALLBACK_TYPES, *CLOSED_CALLBACK_TYPES],
    )
    open_callbacks = [cb for cb in map(_open_callback, callbacks) if cb is not None]
    open_callbacks.sort(key=lambda cb: (cb.due_at is None, cb.due_at or cb.last_event_at))
    last_contact: dict[str, datetime] = {}
    counts: dict[str, int] = {}
    for row in await repository.activity(session, customer.id):
        counts[row.type] = counts.get(row.type, 0) + row.count
        if row.direction != "internal":
            seen = last_contact.get(row.channel)
            if seen is None or row.last_occurred_at > seen:
                last_contact[row.channel] = row.last_occurred_at
    return CustomerProfileOut(
        **base.model_dump(),
        open_callbacks=open_callbacks,
        last_contact=last_contact,
        counts=dict(sorted(counts.items())),
    )


def encode_cursor(event: Event) -> str:
    """An opaque cursor pointing just past `event` in timeline order."""
    raw = f"{event.occurred_at.isoformat()}|{event.seq}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (occurred_at, seq) a cursor points past; BadRequest if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        stamp, seq = raw.split("|")
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None or not seq.isdigit() or int(seq) >= 2**63:
            raise ValueError(raw)
        return at, int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not valid; start again without it.") from None


async def timeline(
    *,
    session: AsyncSession,
    customer_id: str,
    channel: str | None,
    type_: str | None,
    before: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Event], str | None]:
    """A page of the customer's events, newest first, and the cursor of the next page."""
    after = decode_cursor(cursor) if cursor else None
    customer = await live_customer(session=session, customer_id=customer_id)
    rows = await repository.timeline(
        session,
        customer_id=customer.id,
        channel=channel,
        type_=type_,
        before=_utc(before) if before else None,
        after=after,
        limit=limit + 1,
    )
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if len(rows) > limit else None


def event_out(event: Event) -> EventOut:
    """The API shape of a stored event."""
    return EventOut(
        id=event.id,
        occurred_at=event.occurred_at,
        received_at=event.received_at,
        channel=event.channel,
        direction=event.direction,
        type=event.type,
        customer_id=event.customer_id,
        subject=RefOut(kind=event.subject_kind, id=event.subject_id)
        if event.subject_kind
        else None,
        actor=RefOut(kind=event.actor_kind, id=event.actor_id) if event.actor_kind else None,
        summary=event.summary,
        data=event.data,
    )
