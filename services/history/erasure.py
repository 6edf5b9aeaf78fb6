"""Erasure (DESIGN §5): a person's data leaves history, and callback and intake are told.

What stays is what statistics and the audit need and what names nobody: each event's id,
times, channel, direction, type, subject and non-customer actor, and in `data` only the
lifecycle fields our own services write (status, times, counts, outcome, ids). Names,
external ids, identities, summaries, free-form data and customer actor ids go. The phones
and emails travel to callback and intake in history's outbox, and are blanked from the
outbox row as soon as the peer has acknowledged them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from services.history import repository, webhook_events
from services.history.models import Erasure, HistoryOutbox
from services.history.schemas import ErasureOut
from services.history.service import EVENTS_CHANNEL, live_customer, notice
from services.history.settings import HistorySettings
from shared.contracts import CallbackState, ErasureRequest
from shared.db import asyncpg_dsn, utcnow
from shared.http import internal_client
from shared.ids import new_id
from shared.outbox import OutboxRelay, enqueue
from shared.service_app import Extension
from shared.vocabulary import Channel, Direction, EventType, IdentityKind

PEERS = ("callback", "intake")

# `data` keys our own services write that hold no personal data; everything else goes.
# Where a callback stands (`CallbackState`) names nobody: statistics read it after erasure.
KEPT_DATA_KEYS = frozenset(
    {
        *CallbackState.model_fields,
        "kind",
        "channel",
        "queue",
        "source",
        "notification_id",
        "callback_id",
        "inbound_id",
        "survivor_id",
        "merged_customer_id",
        "cause_event_id",
        "erasure_id",
        # A survey's score is not personal (its comment is): kept, so an erasure does not
        # silently take the customer's answers out of the CSAT figures (DESIGN §13).
        "score",
        "survey_id",
    }
)


def _out(erasure: Erasure) -> ErasureOut:
    return ErasureOut(
        id=erasure.id,
        customer_id=erasure.customer_id,
        erased_at=erasure.requested_at,
        **erasure.result,
    )


async def erase_customer(
    *, session: AsyncSession, customer_id: str, now: datetime | None = None
) -> ErasureOut:
    """Erase the customer (or the survivor it was merged into); a repeat answers the same."""
    now = now or utcnow()
    customer = await live_customer(session=session, customer_id=customer_id)
    # Lock as ingest does (identities' advisory locks, then the customer row), so an event
    # arriving meanwhile either lands before the erasure or finds the number unknown.
    identities = (await repository.identities_of(session, [customer.id]))[customer.id]
    await repository.lock_keys(session, {f"{kind}:{value}" for kind, value in identities})
    (customer,) = await repository.lock_customers(session, {customer.id})
    if customer.merged_into is not None:  # merged while we waited: erase the survivor
        return await erase_customer(session=session, customer_id=customer.merged_into, now=now)
    previous = await repository.get_erasure(session, customer.id)
    if previous is not None:
        return _out(previous)
    identities = (await repository.identities_of(session, [customer.id]))[customer.id]
    phones = sorted(v for k, v in identities if k == IdentityKind.PHONE)
    emails = sorted(v for k, v in identities if k == IdentityKind.EMAIL)
    records = [customer.id, *await repository.merged_into(session, customer.id)]
    needles = [*phones, *(p.lstrip("+") for p in phones), *emails]
    if customer.name and len(customer.name) >= 3:
        needles.append(customer.name)
    if customer.external_id:
        needles.append(customer.external_id)
    events = await repository.scrub_events(
        session, customer_id=customer.id, keep_keys=KEPT_DATA_KEYS, needles=needles
    )
    removed = await repository.delete_identities(session, customer.id)
    # Webhook snapshots of the person, sent or still to send (DESIGN §12).
    await webhook_events.redact_deliveries(session, records)
    await repository.blank_customers(session, records, at=now)
    erasure = Erasure(
        id=new_id(),
        customer_id=customer.id,
        requested_at=now,
        result={
            "customers": len(records),
            "identities": removed,
            "events": events,
            "forwarded_to": list(PEERS) if identities else [],
        },
    )
    session.add(erasure)
    if identities:
        request = ErasureRequest(id=erasure.id, phones=phones, emails=emails, requested_at=now)
        for peer in PEERS:
            await enqueue(
                session,
                HistoryOutbox,
                destination=peer,
                path="/v1/erasures",
                payload=request,
                ordering_key=f"erasure:{erasure.id}",
            )
    await _record_erased(session, customer_id=customer.id, erasure_id=erasure.id, now=now)
    await session.flush()
    return _out(erasure)


async def _record_erased(
    session: AsyncSession, *, customer_id: str, erasure_id: str, now: datetime
) -> None:
    """A `customer_erased` event on the (now anonymous) timeline; live streams see it."""
    channel = await repository.latest_channel(session, customer_id) or Channel.WEB
    (row,) = await repository.insert_events(
        session,
        [
            {
                "id": new_id(),
                "customer_id": customer_id,
                "occurred_at": now,
                "received_at": now,
                "channel": channel,
                "direction": Direction.INTERNAL,
                "type": EventType.CUSTOMER_ERASED,
                "subject_kind": "customer",
                "subject_id": customer_id,
                "actor_kind": "system",
                "actor_id": "history",
                "summary": "Personal data erased on request.",
                "data": {"erasure_id": erasure_id},
            }
        ],
    )
    await repository.bump_activity(
        session,
        [
            {
                "customer_id": customer_id,
                "channel": channel,
                "direction": Direction.INTERNAL,
                "type": EventType.CUSTOMER_ERASED,
                "count": 1,
                "last_occurred_at": now,
            }
        ],
    )
    await repository.notify(session, EVENTS_CHANNEL, [notice(row.seq, customer_id)])
    await webhook_events.announce(session, [row], {})


def forget_identities(payload: dict[str, Any]) -> dict[str, Any]:
    """A delivered erasure request, without the phones and emails the peer now has."""
    return {"id": payload.get("id"), "delivered": True}


def relay_extension(settings: HistorySettings) -> Extension:
    """The app extension delivering erasure requests to callback and intake."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        clients = {
            peer: internal_client(settings, service="history", peer=peer, per_call=True)
            for peer in PEERS
        }
        relay = OutboxRelay(
            model=HistoryOutbox,
            session_factory=app.state.session_factory,
            clients=clients,
            listen_dsn=asyncpg_dsn(settings.direct_database_url_for("history")),
            poll_seconds=settings.history_relay_poll_seconds,
            registry=app.state.registry,
            source="history",
            redact_delivered=forget_identities,
        )
        app.state.relay = relay
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop), name="history.erasure.relay")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for client in clients.values():
                await client.aclose()

    return extension
