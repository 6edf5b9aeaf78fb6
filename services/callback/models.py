"""ORM models of the callback schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import make_metadata, utcnow
from shared.ids import new_id
from shared.outbox import OutboxMixin, outbox_indexes

CALLBACK_STATUSES = (
    "pending",
    "scheduled",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "expired",
)
# A number has at most one callback in these states (the partial unique index below).
OPEN_STATUSES = ("pending", "scheduled", "in_progress")
# `cancelled`: no longer wanted (a reminder for a slot the customer left, an erased person).
NOTIFICATION_STATUSES = ("queued", "sending", "sent", "failed", "dead", "cancelled")
# States the sweeper looks at: work still to do.
UNFINISHED_NOTIFICATION_STATUSES = ("queued", "sending", "failed")
CHANNELS = ("sms", "email")
ATTEMPT_OUTCOMES = ("reached", "no_answer", "busy", "voicemail", "wrong_number", "declined")
# How a closed callback ended (`callbacks.outcome`): an agent's outcome, or what closed it.
CLOSING_OUTCOMES = (
    *ATTEMPT_OUTCOMES,
    "reached_inbound",
    "attempts_exhausted",
    "cancelled_by_customer",
    "cancelled_by_agent",
    "do_not_call",
    "erased",
    "sla_breached",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = make_metadata("callback")


class Callback(Base):
    """A promise to call a customer back, and where it stands."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint(_in("status", CALLBACK_STATUSES), name="status"),
        # The database, not the code, guarantees one open callback per number.
        Index(
            "uq_callbacks_phone_open",
            "phone",
            unique=True,
            postgresql_where=text(_in("status", OPEN_STATUSES)),
        ),
        Index("ix_callbacks_phone", "phone"),
        Index("ix_callbacks_status_due_at", "status", "due_at"),
        Index("ix_callbacks_agent_id", "agent_id", postgresql_where=text("agent_id IS NOT NULL")),
        # The agent queue: most urgent first among what is waiting.
        Index(
            "ix_callbacks_queue",
            text("priority DESC"),
            "due_at",
            postgresql_where=text("status IN ('pending', 'scheduled')"),
        ),
        Index(
            "ix_callbacks_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'in_progress'"),
        ),
        Index(
            "ix_callbacks_confirm_key",
            "updated_at",
            postgresql_where=text("confirm_key IS NOT NULL"),
        ),
        Index("ix_callbacks_slot_start", "slot_start"),
        CheckConstraint("(slot_start IS NULL) = (slot_end IS NULL)", name="slot_pair"),
        CheckConstraint("status <> 'scheduled' OR slot_start IS NOT NULL", name="scheduled_slot"),
        CheckConstraint(
            "status <> 'in_progress' OR (agent_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="in_progress_lease",
        ),
        CheckConstraint("attempt_count >= 0", name="attempt_count"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    phone: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    source: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    first_contact_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sla_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    contact_count: Mapped[int] = mapped_column(Integer, default=1)
    consent_sms: Mapped[bool] = mapped_column(default=True)
    consent_email: Mapped[bool] = mapped_column(default=True)
    message: Mapped[str | None] = mapped_column(Text)
    last_confirmation_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # ASAP: due at once, booked by a job into the earliest free slot before the SLA deadline.
    asap: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # A window the customer asked for (`preferred.not_before/not_after`), searched for a slot.
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The one slot this callback holds (a seat in `slot_bookings`), if any.
    slot_start: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), ForeignKey("slot_bookings.slot_start")
    )
    slot_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Grows with every booking; reminder and rebooking notices are keyed by it.
    booking_seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Why this callback needs a person's eye (`no_slot_before_deadline`, `requested_slot_full`).
    flag: Mapped[str | None] = mapped_column(String(48))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Set while a confirmation is owed: the `book_and_confirm` job books (ASAP) and confirms,
    # then clears it; the sweeper re-enqueues the job for any row left with it set.
    confirm_key: Mapped[str | None] = mapped_column(String(255))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    notifications: Mapped[list[Notification]] = relationship(
        back_populates="callback", lazy="raise", order_by="Notification.id"
    )
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="callback", lazy="raise", order_by="Attempt.number"
    )


class SlotBooking(Base):
    """Seats taken in one slot. The database refuses `booked > capacity`, under any load.

    A seat is taken with `INSERT ... ON CONFLICT DO UPDATE SET booked = booked + 1 WHERE
    booked < :capacity`: the row lock serialises writers and the re-checked condition stops
    the one past the last seat.
    """

    __tablename__ = "slot_bookings"
    __table_args__ = (
        CheckConstraint("booked >= 0", name="booked_not_negative"),
        CheckConstraint("booked <= capacity", name="booked_within_capacity"),
        CheckConstraint("slot_end > slot_start", name="slot_order"),
    )

    slot_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    slot_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The capacity when the last seat was taken (the plan may change; seats never vanish).
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CapacityPlan(Base):
    """The staffing plan slots are computed from: one row, replaced by `PUT /v1/capacity`."""

    __tablename__ = "capacity_plans"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attempt(Base):
    """One try by an agent to reach the customer, and how it went."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("callback_id", "number"),
        CheckConstraint(_in("outcome", ATTEMPT_OUTCOMES), name="outcome"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    callback: Mapped[Callback] = relationship(back_populates="attempts", lazy="raise")


class DoNotCall(Base):
    """A number that gets no callback and no SMS (kept through erasure: it is the request)."""

    __tablename__ = "do_not_call"

    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessedRequest(Base):
    """An idempotent write already done (answered calls, acknowledgements, erasures)."""

    __tablename__ = "processed_requests"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallbackRequest(Base):
    """A `request_id` already answered, and the answer: POST /v1/callbacks is idempotent."""

    __tablename__ = "callback_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # None when no callback was made (the number is on the do-not-call list).
    callback_id: Mapped[str | None] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    status_code: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_callback_requests_callback_id", "callback_id"),)


class Notification(Base):
    """One message to a customer: written before the provider is called, the send ledger."""

    __tablename__ = "notifications"
    __table_args__ = (
        # The same event never yields two messages on one channel.
        UniqueConstraint("event_key", "channel"),
        CheckConstraint(_in("status", NOTIFICATION_STATUSES), name="status"),
        CheckConstraint(_in("channel", CHANNELS), name="channel"),
        Index("ix_notifications_callback_id", "callback_id"),
        Index("ix_notifications_status_id", "status", "id"),
        Index(
            "ix_notifications_unfinished",
            "next_attempt_at",
            postgresql_where=text(_in("status", UNFINISHED_NOTIFICATION_STATUSES)),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # None for a message that belongs to no callback (an email-only acknowledgement).
    callback_id: Mapped[str | None] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    # queued/failed: when the next send is due; sending: when the lease of the send runs out.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    callback: Mapped[Callback | None] = relationship(back_populates="notifications", lazy="raise")


class CallbackOutbox(OutboxMixin, Base):
    """History events, written in the same transaction as the change they announce."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()
