"""Slots and bookings, the capacity plan, agents' claims and attempts, do-not-call.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:27:23.452573
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capacity_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_capacity_plans_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_plans")),
        schema="callback",
    )
    op.create_table(
        "do_not_call",
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_do_not_call")),
        schema="callback",
    )
    op.create_table(
        "processed_requests",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_processed_requests")),
        schema="callback",
    )
    op.create_table(
        "slot_bookings",
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "booked <= capacity", name=op.f("ck_slot_bookings_booked_within_capacity")
        ),
        sa.CheckConstraint("booked >= 0", name=op.f("ck_slot_bookings_booked_not_negative")),
        sa.CheckConstraint("slot_end > slot_start", name=op.f("ck_slot_bookings_slot_order")),
        sa.PrimaryKeyConstraint("slot_start", name=op.f("pk_slot_bookings")),
        schema="callback",
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('reached', 'no_answer', 'busy', 'voicemail', 'wrong_number', 'declined')",
            name=op.f("ck_attempts_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callback.callbacks.id"],
            name=op.f("fk_attempts_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        sa.UniqueConstraint("callback_id", "number", name=op.f("uq_attempts_callback_id_number")),
        schema="callback",
    )
    op.alter_column(
        "callback_requests",
        "callback_id",
        existing_type=sa.VARCHAR(length=36),
        nullable=True,
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("asap", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("booking_seq", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="callback",
    )
    op.add_column(
        "callbacks", sa.Column("flag", sa.String(length=48), nullable=True), schema="callback"
    )
    op.add_column(
        "callbacks", sa.Column("agent_id", sa.String(length=64), nullable=True), schema="callback"
    )
    op.add_column(
        "callbacks",
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="callback",
    )
    op.add_column(
        "callbacks", sa.Column("outcome", sa.String(length=32), nullable=True), schema="callback"
    )
    op.add_column(
        "callbacks",
        sa.Column("confirm_key", sa.String(length=255), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.add_column(
        "callbacks",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema="callback",
    )
    op.create_index(
        "ix_callbacks_agent_id",
        "callbacks",
        ["agent_id"],
        unique=False,
        schema="callback",
        postgresql_where=sa.text("agent_id IS NOT NULL"),
    )
    op.create_index(
        "ix_callbacks_confirm_key",
        "callbacks",
        ["updated_at"],
        unique=False,
        schema="callback",
        postgresql_where=sa.text("confirm_key IS NOT NULL"),
    )
    op.create_index(
        "ix_callbacks_lease",
        "callbacks",
        ["lease_expires_at"],
        unique=False,
        schema="callback",
        postgresql_where=sa.text("status = 'in_progress'"),
    )
    op.create_index(
        "ix_callbacks_queue",
        "callbacks",
        [sa.literal_column("priority DESC"), "due_at"],
        unique=False,
        schema="callback",
        postgresql_where=sa.text("status IN ('pending', 'scheduled')"),
    )
    op.create_index(
        "ix_callbacks_slot_start", "callbacks", ["slot_start"], unique=False, schema="callback"
    )
    op.create_foreign_key(
        op.f("fk_callbacks_slot_start_slot_bookings"),
        "callbacks",
        "slot_bookings",
        ["slot_start"],
        ["slot_start"],
        source_schema="callback",
        referent_schema="callback",
    )
    op.alter_column(
        "notifications",
        "callback_id",
        existing_type=sa.VARCHAR(length=36),
        nullable=True,
        schema="callback",
    )
    op.create_index(
        "ix_notifications_status_id",
        "notifications",
        ["status", "id"],
        unique=False,
        schema="callback",
    )
    # Constraints autogenerate does not see on existing tables.
    op.drop_constraint(
        op.f("ck_notifications_status"), "notifications", schema="callback", type_="check"
    )
    op.create_check_constraint(
        op.f("ck_notifications_status"),
        "notifications",
        "status IN ('queued', 'sending', 'sent', 'failed', 'dead', 'cancelled')",
        schema="callback",
    )
    op.create_check_constraint(
        op.f("ck_callbacks_slot_pair"),
        "callbacks",
        "(slot_start IS NULL) = (slot_end IS NULL)",
        schema="callback",
    )
    op.create_check_constraint(
        op.f("ck_callbacks_scheduled_slot"),
        "callbacks",
        "status <> 'scheduled' OR slot_start IS NOT NULL",
        schema="callback",
    )
    op.create_check_constraint(
        op.f("ck_callbacks_in_progress_lease"),
        "callbacks",
        "status <> 'in_progress' OR (agent_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
        schema="callback",
    )
    op.create_check_constraint(
        op.f("ck_callbacks_attempt_count"), "callbacks", "attempt_count >= 0", schema="callback"
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("ck_callbacks_attempt_count"), "callbacks", schema="callback", type_="check"
    )
    op.drop_constraint(
        op.f("ck_callbacks_in_progress_lease"), "callbacks", schema="callback", type_="check"
    )
    op.drop_constraint(
        op.f("ck_callbacks_scheduled_slot"), "callbacks", schema="callback", type_="check"
    )
    op.drop_constraint(
        op.f("ck_callbacks_slot_pair"), "callbacks", schema="callback", type_="check"
    )
    op.drop_constraint(
        op.f("ck_notifications_status"), "notifications", schema="callback", type_="check"
    )
    op.execute(
        "DELETE FROM callback.notifications WHERE status = 'cancelled' OR callback_id IS NULL"
    )
    op.create_check_constraint(
        op.f("ck_notifications_status"),
        "notifications",
        "status IN ('queued', 'sending', 'sent', 'failed', 'dead')",
        schema="callback",
    )
    op.drop_index("ix_notifications_status_id", table_name="notifications", schema="callback")
    op.alter_column(
        "notifications",
        "callback_id",
        existing_type=sa.VARCHAR(length=36),
        nullable=False,
        schema="callback",
    )
    op.drop_constraint(
        op.f("fk_callbacks_slot_start_slot_bookings"),
        "callbacks",
        schema="callback",
        type_="foreignkey",
    )
    op.drop_index("ix_callbacks_slot_start", table_name="callbacks", schema="callback")
    op.drop_index(
        "ix_callbacks_queue",
        table_name="callbacks",
        schema="callback",
        postgresql_where=sa.text("status IN ('pending', 'scheduled')"),
    )
    op.drop_index(
        "ix_callbacks_lease",
        table_name="callbacks",
        schema="callback",
        postgresql_where=sa.text("status = 'in_progress'"),
    )
    op.drop_index(
        "ix_callbacks_confirm_key",
        table_name="callbacks",
        schema="callback",
        postgresql_where=sa.text("confirm_key IS NOT NULL"),
    )
    op.drop_index(
        "ix_callbacks_agent_id",
        table_name="callbacks",
        schema="callback",
        postgresql_where=sa.text("agent_id IS NOT NULL"),
    )
    op.drop_column("callbacks", "erased_at", schema="callback")
    op.drop_column("callbacks", "closed_at", schema="callback")
    op.drop_column("callbacks", "confirm_key", schema="callback")
    op.drop_column("callbacks", "outcome", schema="callback")
    op.drop_column("callbacks", "attempt_count", schema="callback")
    op.drop_column("callbacks", "lease_expires_at", schema="callback")
    op.drop_column("callbacks", "agent_id", schema="callback")
    op.drop_column("callbacks", "flag", schema="callback")
    op.drop_column("callbacks", "booking_seq", schema="callback")
    op.drop_column("callbacks", "slot_end", schema="callback")
    op.drop_column("callbacks", "slot_start", schema="callback")
    op.drop_column("callbacks", "window_end", schema="callback")
    op.drop_column("callbacks", "window_start", schema="callback")
    op.drop_column("callbacks", "asap", schema="callback")
    op.execute("DELETE FROM callback.callback_requests WHERE callback_id IS NULL")
    op.alter_column(
        "callback_requests",
        "callback_id",
        existing_type=sa.VARCHAR(length=36),
        nullable=False,
        schema="callback",
    )
    op.drop_table("attempts", schema="callback")
    op.drop_table("slot_bookings", schema="callback")
    op.drop_table("processed_requests", schema="callback")
    op.drop_table("do_not_call", schema="callback")
    op.drop_table("capacity_plans", schema="callback")
