"""Dialing through the phone system (§10): dials, and attempts the line proposes.

Every attempt recorded so far was typed in by an agent, so each is final.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 23:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"
_RUNNING = "status IN ('initiated', 'requesting', 'ringing_agent', 'ringing_customer', 'connected')"
_OUTCOMES = (
    "('reached', 'no_answer', 'busy', 'voicemail', 'wrong_number', 'declined', 'rescheduled')"
)


def upgrade() -> None:
    op.create_table(
        "dials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("dialer", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("line_result", sa.String(length=24), nullable=True),
        sa.Column("provider_call_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("agent_confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("customer_answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('initiated', 'requesting', 'ringing_agent', 'ringing_customer', "
            "'connected', 'ended', 'failed', 'unknown')",
            name=op.f("ck_dials_status"),
        ),
        sa.CheckConstraint("dialer IN ('twilio', 'webhook')", name=op.f("ck_dials_dialer")),
        sa.CheckConstraint(
            "line_result IS NULL OR line_result IN ('answered', 'no_answer', 'busy', 'machine', "
            "'failed', 'canceled', 'agent_not_connected')",
            name=op.f("ck_dials_result"),
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            [f"{S}.callbacks.id"],
            name=op.f("fk_dials_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dials")),
        schema=S,
    )
    op.create_index(
        "uq_dials_running",
        "dials",
        ["callback_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text(_RUNNING),
    )
    op.create_index(
        "ix_dials_callback_id", "dials", ["callback_id", "created_at"], unique=False, schema=S
    )
    op.create_index(
        "ix_dials_running_updated",
        "dials",
        ["updated_at"],
        unique=False,
        schema=S,
        postgresql_where=sa.text(_RUNNING),
    )
    op.add_column(
        "attempts",
        sa.Column("final", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        schema=S,
    )
    op.add_column(
        "attempts", sa.Column("finalize_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.add_column(
        "attempts", sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.add_column(
        "attempts", sa.Column("proposed_outcome", sa.String(length=16), nullable=True), schema=S
    )
    op.add_column("attempts", sa.Column("dial_id", sa.String(length=36), nullable=True), schema=S)
    op.create_foreign_key(
        op.f("fk_attempts_dial_id_dials"),
        "attempts",
        "dials",
        ["dial_id"],
        ["id"],
        source_schema=S,
        referent_schema=S,
        ondelete="SET NULL",
    )
    op.create_unique_constraint(op.f("uq_attempts_dial_id"), "attempts", ["dial_id"], schema=S)
    op.create_check_constraint(
        op.f("ck_attempts_proposed_outcome"),
        "attempts",
        f"proposed_outcome IS NULL OR proposed_outcome IN {_OUTCOMES}",
        schema=S,
    )
    op.create_check_constraint(
        op.f("ck_attempts_finalize_at"), "attempts", "final OR finalize_at IS NOT NULL", schema=S
    )
    op.create_index(
        "ix_attempts_finalize_at",
        "attempts",
        ["finalize_at"],
        unique=False,
        schema=S,
        postgresql_where=sa.text("NOT final"),
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_finalize_at", table_name="attempts", schema=S)
    op.drop_constraint(op.f("ck_attempts_finalize_at"), "attempts", schema=S, type_="check")
    op.drop_constraint(op.f("ck_attempts_proposed_outcome"), "attempts", schema=S, type_="check")
    op.drop_constraint(op.f("uq_attempts_dial_id"), "attempts", schema=S, type_="unique")
    op.drop_constraint(op.f("fk_attempts_dial_id_dials"), "attempts", schema=S, type_="foreignkey")
    for column in ("dial_id", "proposed_outcome", "finalized_at", "finalize_at", "final"):
        op.drop_column("attempts", column, schema=S)
    op.drop_index("ix_dials_running_updated", table_name="dials", schema=S)
    op.drop_index("ix_dials_callback_id", table_name="dials", schema=S)
    op.drop_index("uq_dials_running", table_name="dials", schema=S)
    op.drop_table("dials", schema=S)
