"""ORM models of the callback schema."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
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
NOTIFICATION_STATUSES = ("queued", "sending", "sent", "failed", "dead")
# States the sweeper looks at: work still to do.
UNFINISHED_NOTIFICATION_STATUSES = ("queued", "sending", "failed")
CHANNELS = ("sms", "email")


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    notifications: Mapped[list[Notification]] = relationship(
        back_populates="callback", lazy="raise", order_by="Notification.id"
    )


class CallbackRequest(Base):
    """A `request_id` already answered, and the answer: POST /v1/callbacks is idempotent."""

    __tablename__ = "callback_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
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
        Index(
            "ix_notifications_unfinished",
            "next_attempt_at",
            postgresql_where=text(_in("status", UNFINISHED_NOTIFICATION_STATUSES)),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
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

    callback: Mapped[Callback] = relationship(back_populates="notifications", lazy="raise")


class CallbackOutbox(OutboxMixin, Base):
    """History events, written in the same transaction as the change they announce."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()
