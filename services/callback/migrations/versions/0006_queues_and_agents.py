"""Queues, agents and routing (§9): v1's single queue becomes the `default` queue.

v1's capacity plan moves into `default` (its zone becomes the queue's), every callback and
every booked seat lands in `default`, and the one-open-callback rule becomes per queue.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"
_OPEN = "status IN ('pending', 'scheduled', 'in_progress')"
_WAITING = "status IN ('pending', 'scheduled')"
_OUTCOMES_V1 = "('reached', 'no_answer', 'busy', 'voicemail', 'wrong_number', 'declined')"
_OUTCOMES = (
    "('reached', 'no_answer', 'busy', 'voicemail', 'wrong_number', 'declined', 'rescheduled')"
)


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("language_wait_minutes", sa.Integer(), nullable=True),
        sa.Column("config", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_queues")),
        schema=S,
    )
    op.create_table(
        "queue_numbers",
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["queue"],
            [f"{S}.queues.key"],
            name=op.f("fk_queue_numbers_queue_queues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_queue_numbers")),
        schema=S,
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queues", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("languages", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=True),
        sa.Column("sip", sa.String(length=200), nullable=True),
        sa.Column("presence", sa.String(length=16), nullable=False),
        sa.Column("presence_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "presence IN ('available', 'break', 'wrap_up', 'offline')",
            name=op.f("ck_agents_presence"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        schema=S,
    )
    # v1's plan, if one was set, becomes the default queue's; its zone the queue's zone.
    op.execute(
        f"""
        INSERT INTO {S}.queues (key, name, timezone, language_wait_minutes, config,
                                created_at, updated_at)
        SELECT 'default', 'Default', p.plan ->> 'timezone', NULL,
               CASE WHEN p.plan IS NULL THEN '{{"name": "Default"}}'::jsonb
                    ELSE jsonb_build_object('name', 'Default', 'capacity', p.plan) END,
               now(), now()
        FROM (SELECT 1) AS one LEFT JOIN {S}.capacity_plans AS p ON p.id = 1
        """
    )

    op.add_column(
        "callbacks",
        sa.Column(
            "queue", sa.String(length=40), server_default=sa.text("'default'"), nullable=False
        ),
        schema=S,
    )
    op.add_column("callbacks", sa.Column("queue_reason", sa.String(length=200)), schema=S)
    op.add_column(
        "callbacks",
        sa.Column("language_known", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        schema=S,
    )
    op.add_column("callbacks", sa.Column("queued_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "callbacks",
        sa.Column(
            "rank_at",
            sa.DateTime(timezone=True),
            sa.Computed("coalesce(queued_at, due_at)", persisted=True),
            nullable=False,
        ),
        schema=S,
    )
    op.add_column("callbacks", sa.Column("owner_agent_id", sa.String(length=64)), schema=S)
    op.add_column("callbacks", sa.Column("owner_until", sa.DateTime(timezone=True)), schema=S)
    op.add_column("attempts", sa.Column("wrap_up_code", sa.String(length=64)), schema=S)
    op.create_check_constraint(
        op.f("ck_callbacks_owner_until"),
        "callbacks",
        "owner_agent_id IS NULL OR owner_until IS NOT NULL",
        schema=S,
    )

    # Seats per queue: the booked slot's key gains the queue.
    op.drop_constraint(
        op.f("fk_callbacks_slot_start_slot_bookings"), "callbacks", type_="foreignkey", schema=S
    )
    op.add_column(
        "slot_bookings",
        sa.Column(
            "queue", sa.String(length=40), server_default=sa.text("'default'"), nullable=False
        ),
        schema=S,
    )
    op.drop_constraint(op.f("pk_slot_bookings"), "slot_bookings", type_="primary", schema=S)
    op.create_primary_key(
        op.f("pk_slot_bookings"), "slot_bookings", ["queue", "slot_start"], schema=S
    )
    op.create_foreign_key(
        op.f("fk_callbacks_queue_slot_bookings"),
        "callbacks",
        "slot_bookings",
        ["queue", "slot_start"],
        ["queue", "slot_start"],
        source_schema=S,
        referent_schema=S,
    )

    op.drop_index("uq_callbacks_phone_open", table_name="callbacks", schema=S)
    op.create_index(
        "uq_callbacks_phone_open",
        "callbacks",
        ["phone", "queue"],
        unique=True,
        schema=S,
        postgresql_where=sa.text(_OPEN),
    )
    op.drop_index("ix_callbacks_queue", table_name="callbacks", schema=S)
    op.create_index(
        "ix_callbacks_queue",
        "callbacks",
        [sa.text("priority DESC"), "rank_at", "id"],
        schema=S,
        postgresql_where=sa.text(_OPEN),
    )
    op.create_index("ix_callbacks_queue_status", "callbacks", ["queue", "status"], schema=S)

    op.drop_constraint(op.f("ck_attempts_outcome"), "attempts", type_="check", schema=S)
    op.create_check_constraint(
        op.f("ck_attempts_outcome"), "attempts", f"outcome IN {_OUTCOMES}", schema=S
    )
    op.drop_table("capacity_plans", schema=S)


def downgrade() -> None:
    op.create_table(
        "capacity_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_capacity_plans_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_plans")),
        schema=S,
    )
    op.execute(
        f"INSERT INTO {S}.capacity_plans (id, plan, updated_at) "
        f"SELECT 1, config -> 'capacity', now() FROM {S}.queues "
        "WHERE key = 'default' AND config ? 'capacity'"
    )
    op.execute(f"DELETE FROM {S}.attempts WHERE outcome = 'rescheduled'")
    op.drop_constraint(op.f("ck_attempts_outcome"), "attempts", type_="check", schema=S)
    op.create_check_constraint(
        op.f("ck_attempts_outcome"), "attempts", f"outcome IN {_OUTCOMES_V1}", schema=S
    )
    op.drop_index("ix_callbacks_queue_status", table_name="callbacks", schema=S)
    op.drop_index("ix_callbacks_queue", table_name="callbacks", schema=S)
    op.drop_index("uq_callbacks_phone_open", table_name="callbacks", schema=S)
    # Back to one queue: only `default`'s open callbacks and seats can stay what they were.
    op.execute(f"DELETE FROM {S}.callbacks WHERE queue <> 'default'")
    op.drop_constraint(
        op.f("fk_callbacks_queue_slot_bookings"), "callbacks", type_="foreignkey", schema=S
    )
    op.execute(f"DELETE FROM {S}.slot_bookings WHERE queue <> 'default'")
    op.drop_constraint(op.f("pk_slot_bookings"), "slot_bookings", type_="primary", schema=S)
    op.create_primary_key(op.f("pk_slot_bookings"), "slot_bookings", ["slot_start"], schema=S)
    op.drop_column("slot_bookings", "queue", schema=S)
    op.create_foreign_key(
        op.f("fk_callbacks_slot_start_slot_bookings"),
        "callbacks",
        "slot_bookings",
        ["slot_start"],
        ["slot_start"],
        source_schema=S,
        referent_schema=S,
    )
    op.create_index(
        "uq_callbacks_phone_open",
        "callbacks",
        ["phone"],
        unique=True,
        schema=S,
        postgresql_where=sa.text(_OPEN),
    )
    op.create_index(
        "ix_callbacks_queue",
        "callbacks",
        [sa.text("priority DESC"), "due_at"],
        schema=S,
        postgresql_where=sa.text(_WAITING),
    )
    op.drop_column("attempts", "wrap_up_code", schema=S)
    op.drop_constraint(op.f("ck_callbacks_owner_until"), "callbacks", type_="check", schema=S)
    for column in (
        "owner_until",
        "owner_agent_id",
        "rank_at",
        "queued_at",
        "language_known",
        "queue_reason",
        "queue",
    ):
        op.drop_column("callbacks", column, schema=S)
    op.drop_table("agents", schema=S)
    op.drop_table("queue_numbers", schema=S)
    op.drop_table("queues", schema=S)
