"""ORM models of the intake schema: what callers sent, and what is still to be forwarded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, LargeBinary, String, Text, text
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
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class IntakeOutbox(OutboxMixin, Base):
    """Forwards to callback and history, written in the same transaction as the inbound row."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()
