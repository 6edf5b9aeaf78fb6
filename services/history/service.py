"""The rules of the contact log: idempotent events, identity resolution, merges, profiles.

Services flush and never commit: the request's unit of work commits once, before the answer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from services.history import repository, webhook_events
from services.history.models import AGENT_ID_MAX_LENGTH, Customer, Event
from services.history.queues import DEFAULT_QUEUE, is_queue_key
from services.history.repository import TimelineEvent
from services.history.schemas import (
    ClosedCallbackOut,
    CustomerOut,
    CustomerProfileOut,
    EventOut,
    MergeOut,
    OpenCallbackOut,
    RefOut,
)
from shared.contracts import CallbackState, CustomerRef, EventIn, Ref
from shared.db import utcnow
from shared.errors import NotFound, Unprocessable
from shared.ids import new_id
from shared.pagination import instant, page_of, read_cursor, sequence_number
from shared.phone import normalize
from shared.vocabulary import OPEN_STATUSES, CallbackStatus, Direction, EventType, IdentityKind

# Callback's lifecycle events, and the status each implies for an event whose data names none
# (stored before callback sent `CallbackState`, or posted by someone else).
IMPLIED_STATUS: dict[str, CallbackStatus] = {
    EventType.CALLBACK_CREATED: CallbackStatus.PENDING,
    EventType.CALLBACK_MERGED: CallbackStatus.PENDING,
    EventType.CALLBACK_SCHEDULED: CallbackStatus.SCHEDULED,
    EventType.CALLBACK_CLAIMED: CallbackStatus.IN_PROGRESS,
    EventType.CALLBACK_ATTEMPTED: CallbackStatus.PENDING,
    EventType.CALLBACK_COMPLETED: CallbackStatus.COMPLETED,
    EventType.CALLBACK_FAILED: CallbackStatus.FAILED,
    EventType.CALLBACK_CANCELLED: CallbackStatus.CANCELLED,
    EventType.CALLBACK_EXPIRED: CallbackStatus.EXPIRED,
}
RECENT_CLOSED = 5
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
        pairs.append((IdentityKind.PHONE, phone))
    if ref.email:
        pairs.append((IdentityKind.EMAIL, str(ref.email).strip().lower()))
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


def event_queue(event: EventIn) -> str | None:
    """The queue an event is about (DESIGN §9), as statistics filter by it.

    `data.queue` when it is a well-formed queue key. Otherwise a callback's event is in
    `default` (callback names the queue on every lifecycle event since v2; one without it was
    stored before queues existed), and any other event is in no queue: intake passes on
    whatever queue name the phone system or the form sent, which may be free text or a key
    callback does not know (it then routes the contact to `default` itself).
    """
    queue = event.data.get("queue")
    if is_queue_key(queue):
        return str(queue)
    if event.subject is not None and event.subject.kind == "callback":
        return DEFAULT_QUEUE
    return None


def event_agent(event: EventIn) -> str | None:
    """The agent an event is about: the actor when an agent acted, else `data.agent_id`.

    Callback records agent actions (claim, attempt, completion) with the agent as actor, and
    clears `agent_id` from the state once the callback leaves the agent's hands, so the event
    that closes a callback names its agent only as its actor.
    """
    if event.actor is not None and event.actor.kind == "agent" and event.actor.id:
        return event.actor.id
    agent_id = event.data.get("agent_id")
    if isinstance(agent_id, str) and 0 < len(agent_id) <= AGENT_ID_MAX_LENGTH:
        return agent_id
    return None


def _utc(value: datetime) -> datetime:
    # A time without an offset is taken as UTC, the API's own zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


EVENTS_CHANNEL = "ringback_history_events"


def notice(seq: int, customer_id: str) -> str:
    """The NOTIFY payload announcing a stored event: its seq and customer id, nothing else."""
    return f"{seq}:{customer_id}"


async def record_events(
    *, session: AsyncSession, events: Sequence[EventIn], region: str
) -> list[Recorded]:
    """Store events idempotently by id, each resolved to one customer; results in input order.

    Every identity, external id and event id involved is advisory-locked first, in one global
    order, so concurrent first events for a new number make one customer and a repeat
    racing its original is answered with the original. A batch costs a handful of
    statements whatever its size: identities and customers are looked up and locked at once,
    new customers, identities, events and activity counts are written in bulk; only a merge
    writes on its own.
    """
    names: set[str] = set()
    for event in events:
        names |= _lock_names(event, region=region)
    await repository.lock_keys(session, names)
    stored = await repository.existing_events(session, {event.id for event in events})
    fresh = [event for event in events if event.id not in stored]
    ingest = _Ingest(session, region)
    await ingest.preload(fresh)
    queued: set[str] = set()
    for event in fresh:
        if event.id in queued:
            continue
        queued.add(event.id)
        customer_id = await ingest.resolve(event.customer, cause=event)
        ingest.add(event, customer_id)
    inserted = await ingest.finish()
    missing = queued - inserted.keys()
    if missing:  # taken outside our locks (a different writer): the first one wins
        stored.update(await repository.existing_events(session, missing))
    results: list[Recorded] = []
    answered: set[str] = set()
    for event in events:
        if event.id in inserted and event.id not in answered:
            results.append(Recorded(inserted[event.id], created=True))
        else:
            results.append(Recorded(inserted.get(event.id) or stored[event.id], created=False))
        answered.add(event.id)
    return results


async def record_event(*, session: AsyncSession, event: EventIn, region: str) -> Recorded:
    """Store one event idempotently by id."""
    (result,) = await record_events(session=session, events=[event], region=region)
    return result


class _Ingest:
    """One unit of work's identity resolution and pending writes.

    Holds what this transaction knows: which customer owns each identity and external id,
    the customers it has row-locked (or created), and which ids merges sent where. Writes
    wait in lists and go out in bulk at `finish()`, or before a merge, whose statements must
    see everything written so far.
    """

    def __init__(self, session: AsyncSession, region: str) -> None:
        self.session = session
        self.region = region
        self.owner: dict[tuple[str, str], str] = {}
        self.by_external: dict[str, str] = {}
        self.alias: dict[str, str] = {}
        self.customers: dict[str, Customer] = {}
        self.new_identities: list[dict[str, str]] = []
        self.pending: list[dict[str, Any]] = []
        self.inserted: dict[str, Event] = {}
        self.merged: dict[str, str] = {}  # customer_merged event id -> merged-away customer

    def live(self, customer_id: str) -> str:
        while customer_id in self.alias:
            customer_id = self.alias[customer_id]
        return customer_id

    async def preload(self, events: Sequence[EventIn]) -> None:
        """Look up and row-lock every customer the batch names, in three statements."""
        pairs: set[tuple[str, str]] = set()
        externals: set[str] = set()
        for event in events:
            pairs.update(identity_pairs(event.customer, region=self.region))
            if event.customer.external_id:
                externals.add(event.customer.external_id)
        self.owner = await repository.customer_ids_by_identity(self.session, pairs)
        self.by_external = await repository.customer_ids_by_external_id(self.session, externals)
        await self._lock({*self.owner.values(), *self.by_external.values()})

    async def _lock(self, ids: set[str]) -> None:
        """Row-lock customers, following merges to the survivors."""
        ids -= self.customers.keys()
        for _ in range(_MAX_MERGE_HOPS):
            if not ids:
                return
            rows = await repository.lock_customers(self.session, ids)
            ids = set()
            for row in rows:
                self.customers[row.id] = row
                if row.merged_into:
                    self.alias[row.id] = row.merged_into
                    if row.merged_into not in self.customers:
                        ids.add(row.merged_into)
        raise RuntimeError("customer merge chain longer than expected")

    async def resolve(self, ref: CustomerRef, *, cause: EventIn) -> str:
        """The id of the one customer `ref` denotes: found, created, extended or merged.

        Phone numbers, emails and the integration's `external_id` each find a customer. When
        they find two or more, the event bridges them and they are merged into the oldest. A
        reference with none of them (a withheld number, a message without a reply address)
        gets a new anonymous customer of its own: the event is kept on a timeline, and
        nothing would ever link it to anyone else, so sharing one "unknown" customer would
        only mix strangers.
        """
        pairs = identity_pairs(ref, region=self.region)
        ids = {self.live(self.owner[pair]) for pair in pairs if pair in self.owner}
        if ref.external_id and ref.external_id in self.by_external:
            ids.add(self.live(self.by_external[ref.external_id]))
        now = utcnow()
        if not ids:
            customer = Customer(
                id=new_id(),
                name=ref.name,
                external_id=ref.external_id,
                language=ref.language,
                created_at=now,
                updated_at=now,
            )
            self.session.add(customer)
            self.customers[customer.id] = customer
            self._attach(customer.id, pairs)
            if ref.external_id:
                self.by_external[ref.external_id] = customer.id
            return customer.id

        await self._lock(ids)  # a no-op unless a customer was created or merged meanwhile
        ranked = sorted((self.customers[i] for i in ids), key=lambda c: (c.created_at, c.id))
        survivor, losers = ranked[0], ranked[1:]
        changed = False
        if losers:
            await self.flush()  # the merge's statements must see everything written so far
            for loser in losers:
                await self._merge(survivor=survivor, loser=loser, cause=cause)
            changed = True
        missing = [pair for pair in pairs if pair not in self.owner]
        if missing:
            self._attach(survivor.id, missing)
            changed = True
        # Fill blanks only: events arrive out of order, so "newest name wins" would flap.
        for field in ("name", "external_id", "language"):
            if getattr(survivor, field) is None and getattr(ref, field) is not None:
                setattr(survivor, field, getattr(ref, field))
                changed = True
        if ref.external_id and survivor.external_id == ref.external_id:
            self.by_external.setdefault(ref.external_id, survivor.id)
        if changed:
            survivor.updated_at = now
        return survivor.id

    def _attach(self, customer_id: str, pairs: Sequence[tuple[str, str]]) -> None:
        for kind, value in pairs:
            self.owner[(kind, value)] = customer_id
            self.new_identities.append({"kind": kind, "value": value, "customer_id": customer_id})

    async def _merge(self, *, survivor: Customer, loser: Customer, cause: EventIn) -> None:
        """Merge `loser` into `survivor` and record it on the survivor's timeline."""
        await repository.merge_customer(self.session, loser_id=loser.id, survivor_id=survivor.id)
        # The statements above changed the rows; keep the loaded objects in step without
        # writing them again.
        set_committed_value(loser, "merged_into", survivor.id)
        self.alias[loser.id] = survivor.id
        for field in ("name", "external_id", "language"):
            if getattr(survivor, field) is None and getattr(loser, field) is not None:
                setattr(survivor, field, getattr(loser, field))
        merged = EventIn(
            id=new_id(),
            occurred_at=utcnow(),
            channel=cause.channel,
            direction=Direction.INTERNAL,
            type=EventType.CUSTOMER_MERGED,
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
        self.merged[merged.id] = loser.id
        self.add(merged, survivor.id)

    def add(self, event: EventIn, customer_id: str) -> None:
        """Queue one event for insertion."""
        self.pending.append(
            {
                "id": event.id,
                "customer_id": customer_id,
                "occurred_at": _utc(event.occurred_at),
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
                "queue": event_queue(event),
                "agent_id": event_agent(event),
            }
        )

    async def flush(self) -> None:
        """Write what is pending: customers, identities, events and their activity counts."""
        await self.session.flush()
        await repository.add_identities(self.session, self.new_identities)
        self.new_identities = []
        rows = await repository.insert_events(self.session, self.pending)
        self.pending = []
        counts: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for row in rows:
            self.inserted[row.id] = row
            key = (row.customer_id, row.channel, row.direction, row.type)
            seen = counts.get(key)
            if seen is None:
                counts[key] = {
                    "customer_id": row.customer_id,
                    "channel": row.channel,
                    "direction": row.direction,
                    "type": row.type,
                    "count": 1,
                    "last_occurred_at": row.occurred_at,
                }
            else:
                seen["count"] += 1
                seen["last_occurred_at"] = max(seen["last_occurred_at"], row.occurred_at)
        await repository.bump_activity(self.session, list(counts.values()))

    async def finish(self) -> dict[str, Event]:
        """Flush, announce the new events (NOTIFY at commit), and return them by id."""
        await self.flush()
        notices: list[str] = []
        for row in sorted(self.inserted.values(), key=lambda r: r.seq):
            survivor = self.live(row.customer_id)
            if survivor != row.customer_id:  # moved by a later merge in this batch
                set_committed_value(row, "customer_id", survivor)
            notices.append(notice(row.seq, survivor))
            if row.id in self.merged:  # streams following the merged-away id follow it here
                notices.append(notice(row.seq, self.merged[row.id]))
        await repository.notify(self.session, EVENTS_CHANNEL, notices)
        # Webhooks out (DESIGN §12): written with the events, sent by the relay after commit.
        ordered = sorted(self.inserted.values(), key=lambda r: r.seq)
        await webhook_events.announce(self.session, ordered, self.customers)
        return self.inserted


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
        pairs.append((IdentityKind.PHONE, e164))
    if email is not None:
        pairs.append((IdentityKind.EMAIL, email.strip().lower()))
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
            phones=[v for k, v in identities[c.id] if k == IdentityKind.PHONE],
            emails=[v for k, v in identities[c.id] if k == IdentityKind.EMAIL],
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in sorted(customers, key=lambda c: (c.created_at, c.id))
    ]


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _in_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def where_it_stands(event: Event) -> CallbackState:
    """Where the event's callback stands: the event's data, read as the `CallbackState` contract.

    Callback sends the whole state on every lifecycle event. An older event, or one posted
    by someone else, may lack fields or hold values the contract refuses: those are left out,
    and a missing status is the one the event type implies.
    """
    data = event.data if isinstance(event.data, dict) else {}
    try:
        return CallbackState.model_validate(data)
    except ValidationError as error:
        refused = {problem["loc"][0] for problem in error.errors() if problem["loc"]}
    kept = {key: value for key, value in data.items() if key not in refused}
    kept.setdefault("status", IMPLIED_STATUS[event.type])
    return CallbackState.model_validate(kept)


def _callback_state(event: Event) -> OpenCallbackOut | ClosedCallbackOut | None:
    """Where one callback stands, from its latest lifecycle event."""
    if event.subject_id is None:
        return None
    state = where_it_stands(event)
    agent_id = state.agent_id
    claimed = event.type == EventType.CALLBACK_CLAIMED
    if agent_id is None and claimed and event.actor_kind == "agent":
        agent_id = event.actor_id
    # As learned on arrival (or by the backfill for events stored before queues).
    queue = event.queue or DEFAULT_QUEUE
    if state.status not in OPEN_STATUSES:
        return ClosedCallbackOut(
            id=event.subject_id,
            status=state.status,
            queue=queue,
            outcome=state.outcome,
            agent_id=agent_id,
            attempts=state.attempts,
            closed_at=event.occurred_at,
            last_event_type=event.type,
        )
    return OpenCallbackOut(
        id=event.subject_id,
        status=state.status,
        queue=queue,
        due_at=_in_utc(state.due_at),
        agent_id=agent_id,
        last_event_type=event.type,
        last_event_at=event.occurred_at,
        sla_deadline=_in_utc(state.sla_deadline),
        slot_start=_in_utc(state.slot_start),
        slot_end=_in_utc(state.slot_end),
        attempts=state.attempts,
        contact_count=state.contact_count,
        flag=state.flag,
    )


async def customer_profile(*, session: AsyncSession, customer_id: str) -> CustomerProfileOut:
    """The profile and where the customer's case stands, all read from the timeline."""
    customer = await live_customer(session=session, customer_id=customer_id)
    (base,) = await _customers_out(session, [customer])
    callbacks = await repository.latest_callback_events(
        session,
        customer_id=customer.id,
        types=list(IMPLIED_STATUS),
    )
    open_callbacks: list[OpenCallbackOut] = []
    closed: list[ClosedCallbackOut] = []
    for state in map(_callback_state, callbacks):
        if isinstance(state, OpenCallbackOut):
            open_callbacks.append(state)
        elif isinstance(state, ClosedCallbackOut):
            closed.append(state)
    open_callbacks.sort(key=lambda cb: (cb.due_at is None, cb.due_at or cb.last_event_at))
    closed.sort(key=lambda cb: cb.closed_at, reverse=True)
    last_contact: dict[str, datetime] = {}
    counts: dict[str, int] = {}
    for row in await repository.activity(session, customer.id):
        counts[row.type] = counts.get(row.type, 0) + row.count
        if row.direction != Direction.INTERNAL:
            seen = last_contact.get(row.channel)
            if seen is None or row.last_occurred_at > seen:
                last_contact[row.channel] = row.last_occurred_at
    return CustomerProfileOut(
        **base.model_dump(),
        open_callbacks=open_callbacks,
        recent_callbacks=closed[:RECENT_CLOSED],
        last_contact=last_contact,
        counts=dict(sorted(counts.items())),
        merged_ids=await repository.merged_into(session, customer.id),
        erased_at=customer.erased_at,
    )


async def merges(
    *, session: AsyncSession, customer_id: str, cursor: str | None, limit: int
) -> tuple[list[MergeOut], str | None]:
    """The merges recorded on the customer's timeline, newest first."""
    events, next_cursor = await timeline(
        session=session,
        customer_id=customer_id,
        channel=None,
        type_=EventType.CUSTOMER_MERGED,
        before=None,
        cursor=cursor,
        limit=limit,
    )
    items: list[MergeOut] = []
    for event in events:
        parsed = orjson.loads(event.data_json)
        data = parsed if isinstance(parsed, dict) else {}
        items.append(
            MergeOut(
                event_id=event.id,
                merged_at=event.occurred_at,
                survivor_id=str(data.get("survivor_id") or event.customer_id),
                merged_customer_id=str(data.get("merged_customer_id") or event.subject_id),
                cause_event_id=_text(data.get("cause_event_id")),
            )
        )
    return items, next_cursor


def _position(row: TimelineEvent) -> tuple[datetime, int]:
    """A timeline row's sort key, which its page's cursor holds."""
    return row.occurred_at, row.seq


async def timeline(
    *,
    session: AsyncSession,
    customer_id: str,
    channel: str | None,
    type_: str | None,
    before: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[TimelineEvent], str | None]:
    """A page of the customer's events, newest first, and the cursor of the next page.

    The customer's existence is checked in the same statement as the page is read (one round
    trip); a merged-away id then costs a second read, of its survivor's timeline.
    """
    after = read_cursor(cursor, instant, sequence_number) if cursor else None
    if not _is_customer_id(customer_id):
        raise NotFound("No customer has this id.")
    page = repository.TimelineQuery(
        channel=channel,
        type_=type_,
        before=_utc(before) if before else None,
        after=after,
        limit=limit + 1,
    )
    found = await repository.customer_timeline(session, customer_id=customer_id, page=page)
    if found is None:
        raise NotFound("No customer has this id.")
    merged_into, rows = found
    if merged_into is not None:
        customer = await live_customer(session=session, customer_id=customer_id)
        rows = await repository.timeline(session, customer_id=customer.id, page=page)
    return page_of(rows, limit, _position)


def _ref(kind: str | None, id_: str | None) -> dict[str, str | None] | None:
    return {"kind": kind, "id": id_} if kind else None


def event_json(row: TimelineEvent) -> dict[str, Any]:
    """A timeline event as `EventOut` shows it (same fields, same order), ready for orjson.

    The timeline answers with these rather than with `EventOut` models, which FastAPI would
    validate once more before serialising them; `data` goes out as the JSON text PostgreSQL
    returned. `test_page_is_what_event_page_serialises` checks that the two agree.
    """
    return {
        "id": row.id,
        "occurred_at": row.occurred_at,
        "received_at": row.received_at,
        "channel": row.channel,
        "direction": row.direction,
        "type": row.type,
        "customer_id": row.customer_id,
        "subject": _ref(row.subject_kind, row.subject_id),
        "actor": _ref(row.actor_kind, row.actor_id),
        "summary": row.summary,
        "data": orjson.Fragment(row.data_json),
    }


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
