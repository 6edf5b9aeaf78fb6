"""Events out: each new timeline event becomes one delivery per subscribed endpoint, its body
snapshotted now (so every retry sends the same bytes), written in the event's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import services.history.service as history_service
from services.history import repository
from services.history.event_names import ALL_EVENTS, EVENT_NAMES
from services.history.models import Customer, Event, WebhookDelivery, WebhookEndpoint
from services.history.webhook_delivery import CHANNEL
from services.history.webhook_signing import new_message_id
from shared import fast_sql
from shared.db import utcnow
from shared.outbox import insert_rows, row_values, rows_params
from shared.vocabulary import WebhookEventType

DESTINATION = "webhook"


# A delivery's columns beyond the outbox's, each a row's own.
_DELIVERY_COLUMNS = ("endpoint_id", "message_id", "event_id", "customer_id")
_INSERT_DELIVERIES = insert_rows(WebhookDelivery, extra=_DELIVERY_COLUMNS)
# Run for every batch of events with a subscriber: compiled once (`shared.fast_sql`).
_ENABLED_ENDPOINTS = select(WebhookEndpoint.id, WebhookEndpoint.events).where(
    WebhookEndpoint.enabled
)
_WAKE = text("SELECT pg_notify(:channel, :endpoints)")
_FAST_ENABLED_ENDPOINTS = fast_sql.Statement.of(_ENABLED_ENDPOINTS)
_FAST_INSERT_DELIVERIES = fast_sql.Statement.of(_INSERT_DELIVERIES)
_FAST_WAKE = fast_sql.Statement.of(_WAKE)


def body(event_name: str, event: Event, data: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook's body as Standard Webhooks lays it out: `{"type", "timestamp", "data"}`."""
    return {
        "type": event_name,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": dict(data),
    }


async def _data(
    session: AsyncSession, name: WebhookEventType, event: Event, customers: Mapping[str, Customer]
) -> dict[str, Any]:
    """`data`: the resource as the REST API shows it, at the time of the event."""
    if name is WebhookEventType.CUSTOMER_ERASED:
        # Ids only: the person is gone, and so is everything that named them.
        return {
            "customer_id": event.customer_id,
            "erasure_id": (event.data or {}).get("erasure_id"),
        }
    if name is WebhookEventType.CUSTOMER_MERGED:
        customer = customers.get(event.customer_id) or await repository.get_customer(
            session, event.customer_id
        )
        assert customer is not None  # the event was written for it in this transaction
        (out,) = await history_service._customers_out(session, [customer])
        return {
            **out.model_dump(mode="json"),
            "merged_customer_id": (event.data or {}).get("merged_customer_id"),
        }
    if event.subject_kind == "callback" and event.type in history_service.IMPLIED_STATUS:
        # The callback as the customer's profile lists it, from the `CallbackState` contract
        # callback sends with every lifecycle event.
        state = history_service._callback_state(event)
        if state is not None:
            return {"customer_id": event.customer_id, **state.model_dump(mode="json")}
    return history_service.event_out(event).model_dump(mode="json")


async def announce(
    session: AsyncSession, events: Sequence[Event], customers: Mapping[str, Customer]
) -> int:
    """Write a delivery of each event that has a webhook name to every enabled endpoint that
    subscribed to it; how many. Events with no webhook name cost nothing, and the rest one
    small read of the endpoints."""
    named = [(EVENT_NAMES[event.type], event) for event in events if event.type in EVENT_NAMES]
    if not named:
        return 0
    endpoints = await fast_sql.fetch(session, _FAST_ENABLED_ENDPOINTS, {})
    if not endpoints:
        return 0
    rows: list[dict[str, Any]] = []
    now = utcnow()  # one time for the rows written together (`rows_params`)
    for name, event in named:
        wanted = [e for e, filters in endpoints if ALL_EVENTS in filters or name in filters]
        if not wanted:
            continue
        payload = body(name, event, await _data(session, name, event, customers))
        for endpoint_id in wanted:
            message_id = new_message_id()
            values = row_values(
                destination=DESTINATION,
                path=name,
                payload=payload,
                ordering_key=message_id,
                now=now,
            )
            rows.append(
                {
                    **values,
                    "endpoint_id": endpoint_id,
                    "message_id": message_id,
                    "event_id": event.id,
                    "customer_id": event.customer_id,
                }
            )
    if rows:
        # One statement for them all (an executemany ran one INSERT per row), no ORM objects:
        # nothing reads the rows back in this request.
        await fast_sql.fetch(
            session,
            _FAST_INSERT_DELIVERIES,
            rows_params(WebhookDelivery, rows, extra=_DELIVERY_COLUMNS),
        )
        # The relays wake at commit (NOTIFY is transactional), told which endpoints have news.
        endpoints_named = ",".join(sorted({row["endpoint_id"] for row in rows}))
        await fast_sql.fetch(
            session, _FAST_WAKE, {"channel": CHANNEL, "endpoints": endpoints_named}
        )
    return len(rows)


async def redact_deliveries(session: AsyncSession, customer_ids: Collection[str]) -> int:
    """Erasure: every delivery snapshot that holds these customers keeps its type and time and
    loses its data; one still pending is sent that way. How many."""
    redacted = func.jsonb_build_object(
        "type",
        WebhookDelivery.payload["type"],
        "timestamp",
        WebhookDelivery.payload["timestamp"],
        "data",
        func.jsonb_build_object(
            "customer_id", WebhookDelivery.customer_id, "redacted", text("true")
        ),
    )
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.customer_id.in_(list(customer_ids)))
        .values(payload=redacted)
        .returning(WebhookDelivery.id)
    )
    return len(result.all())
