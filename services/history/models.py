"""ORM models of the history schema: customers, their identities, and contact events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.history.queues import QUEUE_KEY_MAX_LENGTH
from shared.db import make_metadata, utcnow
from shared.ids import new_id
from shared.outbox import OutboxMixin, outbox_indexes
from shared.vocabulary import IdentityKind

IDENTITY_KINDS: tuple[IdentityKind, ...] = tuple(IdentityKind)
# Agent ids as callback's API takes them, and the width of the actor id column they come in.
AGENT_ID_MAX_LENGTH = 64
_KIND_CHECK = f"kind IN ({', '.join(repr(str(kind)) for kind in IDENTITY_KINDS)})"


class Base(DeclarativeBase):
    metadata = make_metadata("history")


class Customer(Base):
    """A person who contacted us; `merged_into` points a merged-away record at its survivor."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    # Set when the person's data was erased (DESIGN §5); the record stays, without PII.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "ix_customers_external_id",
            "external_id",
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(
            "ix_customers_merged_into",
            "merged_into",
            postgresql_where=text("merged_into IS NOT NULL"),
        ),
    )


class CustomerIdentity(Base):
    """One phone number (E.164) or email (lower-cased) and the customer it belongs to."""

    __tablename__ = "identities"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[str] = mapped_column(String(254), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (CheckConstraint(_KIND_CHECK, name="kind"),)


class Event(Base):
    """One entry on a customer's timeline; `id` is the sender's, `seq` our arrival order.

    Partitioned by month of `occurred_at` (`services.history.partitions`): a unique key must
    hold the partition key, so the primary key is (id, occurred_at) and a resend with the
    same id is recognised under the event's advisory lock (docs/history.md, Partitioning).
    """

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Unique by construction (one identity sequence), indexed per partition.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(64))
    subject_kind: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    actor_kind: Mapped[str | None] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(500), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # The queue and the agent the event is about (DESIGN §9), learned from it on arrival
    # (`service.event_queue`, `service.event_agent`) so statistics filter on an index.
    queue: Mapped[str | None] = mapped_column(String(QUEUE_KEY_MAX_LENGTH))
    agent_id: Mapped[str | None] = mapped_column(String(AGENT_ID_MAX_LENGTH))

    __table_args__ = (
        Index("ix_events_seq", "seq"),
        # The timeline: one customer's events newest first, keyset-paginated.
        Index("ix_events_timeline", "customer_id", text("occurred_at DESC"), text("seq DESC")),
        Index(
            "ix_events_customer_channel",
            "customer_id",
            "channel",
            text("occurred_at DESC"),
            text("seq DESC"),
        ),
        Index(
            "ix_events_customer_type",
            "customer_id",
            "type",
            text("occurred_at DESC"),
            text("seq DESC"),
        ),
        # "Where it stands": the latest event of each of a customer's callbacks.
        Index(
            "ix_events_customer_callbacks",
            "customer_id",
            "subject_id",
            text("occurred_at DESC"),
            text("seq DESC"),
            postgresql_where=text("subject_kind = 'callback'"),
        ),
        # Statistics and retention read events by time across all customers.
        Index("ix_events_occurred_at", "occurred_at"),
        # Statistics: every event of one callback (its first contact, its SLA deadline).
        Index(
            "ix_events_callback_subject",
            "subject_id",
            "occurred_at",
            postgresql_where=text("subject_kind = 'callback'"),
        ),
        # Statistics of one queue or one agent: their events by time.
        Index(
            "ix_events_queue",
            "queue",
            "occurred_at",
            postgresql_where=text("queue IS NOT NULL"),
        ),
        Index(
            "ix_events_agent",
            "agent_id",
            "occurred_at",
            postgresql_where=text("agent_id IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )


class CustomerActivity(Base):
    """Per customer, channel, direction and type: how many events and the latest one.

    Kept up to date as events are stored, so a profile's counts and last contacts cost a
    handful of rows however long the customer's history is.
    """

    __tablename__ = "customer_activity"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Erasure(Base):
    """The audit line of an erasure: who (a customer id), when, how much; never the PII itself."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # No foreign key: the line outlives the customer record once retention purges it.
    customer_id: Mapped[str] = mapped_column(String(36), unique=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class HistoryOutbox(OutboxMixin, Base):
    """Erasure requests for callback and intake; the payload is blanked once delivered."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()


class WebhookEndpoint(Base):
    """A subscriber's URL for webhooks out (DESIGN §12), its filter and its signing secrets."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    # `["*"]` or webhook event names.
    events: Mapped[list[str]] = mapped_column(JSONB)
    # Standard Webhooks secrets (`whsec_` + base64), kept to sign with: a hash would not do.
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret signs too, until `previous_secret_expires_at`.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(32))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The first failure since the last success; five days of them turn the endpoint off.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The creating key's id and its Idempotency-Key, and the request's hash, so a repeat
    # answers the first result (with the secret, which is otherwise never shown again).
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ix_webhook_endpoints_enabled", "id", postgresql_where=text("enabled")),
    )


_PENDING = text("delivered_at IS NULL AND dead_at IS NULL")


class WebhookDelivery(OutboxMixin, Base):
    """One event for one endpoint: an outbox row whose payload is the body, signed on sending.

    `destination` is `webhook`, `path` the event name, `ordering_key` the message id: webhooks
    promise no order, and one failing event must not hold back the next for three days.
    """

    __tablename__ = "webhook_deliveries"

    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # `webhook-id`: the same on every try and on a replay, so receivers drop repeats.
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    # The timeline event it announces (none for a replay's own row) and whose data it holds.
    event_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(36))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The relay's claim: each endpoint's due rows, by due time.
        Index(
            "ix_webhook_deliveries_pending",
            "endpoint_id",
            "available_at",
            postgresql_where=_PENDING,
        ),
        # The relay's purge: finished deliveries, oldest first.
        Index(
            "ix_webhook_deliveries_finished",
            "created_at",
            postgresql_where=text("delivered_at IS NOT NULL OR dead_at IS NOT NULL"),
        ),
        # An endpoint's delivery log, newest first.
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        # Erasure finds the snapshots that hold a customer.
        Index(
            "ix_webhook_deliveries_customer",
            "customer_id",
            postgresql_where=text("customer_id IS NOT NULL"),
        ),
    )
