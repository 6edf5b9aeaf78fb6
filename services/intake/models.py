"""ORM models of the intake schema: what callers sent, and what is still to be forwarded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import make_metadata, utcnow
from shared.ids import new_id
from shared.outbox import OutboxMixin, outbox_indexes


class Base(DeclarativeBase):
    metadata = make_metadata("intake")


class Inbound(Base):
    """One request a caller sent us, kept as received (rejected ones too, with the reason)."""

    __tablename__ = "inbound"
    __table_args__ = (
        # The provider's own id (call id, request key) makes a redelivery a duplicate.
        Index(
            "uq_inbound_provider_external_id",
            "provider",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_inbound_status_received_at", "status", "received_at"),
        # Erasure finds a person's rows by these.
        Index("ix_inbound_phone", "phone", postgresql_where=text("phone IS NOT NULL")),
        Index("ix_inbound_email", "email", postgresql_where=text("email IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    content_type: Mapped[str | None] = mapped_column(String(200))
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    body_truncated: Mapped[bool] = mapped_column(default=False)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    # The query string of the request (Twilio signs it; a replay re-parses with it).
    query: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallLeg(Base):
    """What one provider said so far about one call leg (CTI callId, Twilio CallSid).

    Events about a call arrive separately, twice, or out of order; this row is what lets a
    later event be understood (a hangup without an answer, the customer of a child leg) and
    makes each outcome of a call reported once.
    """

    __tablename__ = "call_legs"
    __table_args__ = (
        PrimaryKeyConstraint("provider", "call_id"),
        Index("ix_call_legs_phone", "phone", postgresql_where=text("phone IS NOT NULL")),
        Index("ix_call_legs_updated_at", "updated_at"),
    )

    provider: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str] = mapped_column(String(200))
    direction: Mapped[str | None] = mapped_column(String(16))
    caller: Mapped[str | None] = mapped_column(String(64))
    callee: Mapped[str | None] = mapped_column(String(64))
    # The queue an earlier event named: a CTI hangup or a Twilio child leg may not repeat it.
    queue: Mapped[str | None] = mapped_column(String(200))
    # The caller in E.164, when it parses: erasure finds legs by it.
    phone: Mapped[str | None] = mapped_column(String(32))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    missed_inbound_id: Mapped[str | None] = mapped_column(String(36))
    answered_inbound_id: Mapped[str | None] = mapped_column(String(36))
    # The voicemail the caller left on this call (§11), gathered from requests that arrive in
    # any order: the recording's status callback, the `<Record action>` (the caller's number)
    # and the transcript. Forwarded once, by `voicemail_inbound_id`, when the recording and
    # the caller are both known; a transcript that comes later follows on its own.
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_duration: Mapped[int | None] = mapped_column(Integer)
    transcript: Mapped[str | None] = mapped_column(Text)
    transcript_forwarded: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    voicemail_inbound_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookReceipt(Base):
    """A Standard Webhooks `webhook-id` seen recently: a replay of it is a duplicate."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (Index("ix_webhook_receipts_received_at", "received_at"),)

    webhook_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    inbound_id: Mapped[str] = mapped_column(String(36))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Erasure(Base):
    """An erasure request done (no personal data: only its id and what was erased)."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class IntakeOutbox(OutboxMixin, Base):
    """Forwards to callback and history, written in the same transaction as the inbound row."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()
