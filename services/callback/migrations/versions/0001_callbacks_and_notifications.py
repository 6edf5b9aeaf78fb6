"""Callbacks, their idempotent requests, notifications and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 18:57:41.420254
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared import outbox_migrations

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("first_contact_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sla_deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("contact_count", sa.Integer(), nullable=False),
        sa.Column("consent_sms", sa.Boolean(), nullable=False),
        sa.Column("consent_email", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("last_confirmation_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'scheduled', 'in_progress', "
            "'completed', 'failed', 'cancelled', 'expired')",
            name=op.f("ck_callbacks_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        schema="callback",
    )
    op.create_index("ix_callbacks_phone", "callbacks", ["phone"], unique=False, schema="callback")
    op.create_index(
        "ix_callbacks_status_due_at",
        "callbacks",
        ["status", "due_at"],
        unique=False,
        schema="callback",
    )
    # The database guarantees one open callback per number.
    op.create_index(
        "uq_callbacks_phone_open",
        "callbacks",
        ["phone"],
        unique=True,
        schema="callback",
        postgresql_where=sa.text("status IN ('pending', 'scheduled', 'in_progress')"),
    )
    outbox_migrations.create_table("callback")
    op.create_table(
        "callback_requests",
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callback.callbacks.id"],
            name=op.f("fk_callback_requests_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_callback_requests")),
        schema="callback",
    )
    op.create_index(
        "ix_callback_requests_callback_id",
        "callback_requests",
        ["callback_id"],
        unique=False,
        schema="callback",
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f("ck_notifications_channel")),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'dead')",
            name=op.f("ck_notifications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callback.callbacks.id"],
            name=op.f("fk_notifications_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "event_key", "channel", name=op.f("uq_notifications_event_key_channel")
        ),
        schema="callback",
    )
    op.create_index(
        "ix_notifications_callback_id",
        "notifications",
        ["callback_id"],
        unique=False,
        schema="callback",
    )
    op.create_index(
        "ix_notifications_unfinished",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        schema="callback",
        postgresql_where=sa.text("status IN ('queued', 'sending', 'failed')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notifications_unfinished",
        table_name="notifications",
        schema="callback",
        postgresql_where=sa.text("status IN ('queued', 'sending', 'failed')"),
    )
    op.drop_index("ix_notifications_callback_id", table_name="notifications", schema="callback")
    op.drop_table("notifications", schema="callback")
    op.drop_index(
        "ix_callback_requests_callback_id", table_name="callback_requests", schema="callback"
    )
    op.drop_table("callback_requests", schema="callback")
    outbox_migrations.drop_table("callback")
    op.drop_index(
        "uq_callbacks_phone_open",
        table_name="callbacks",
        schema="callback",
        postgresql_where=sa.text("status IN ('pending', 'scheduled', 'in_progress')"),
    )
    op.drop_index("ix_callbacks_status_due_at", table_name="callbacks", schema="callback")
    op.drop_index("ix_callbacks_phone", table_name="callbacks", schema="callback")
    op.drop_table("callbacks", schema="callback")
