"""Promises at risk (§14): what the at-risk job last found about each open callback's promise.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.create_table(
        "promise_marks",
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("queue", sa.String(length=40), nullable=False),
        sa.Column("promised_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("expected_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at_risk_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recovered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            [f"{S}.callbacks.id"],
            name=op.f("fk_promise_marks_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("callback_id", name=op.f("pk_promise_marks")),
        schema=S,
    )
    op.create_index(
        "ix_promise_marks_queue",
        "promise_marks",
        ["queue"],
        unique=False,
        schema=S,
        postgresql_where=sa.text("at_risk"),
    )


def downgrade() -> None:
    op.drop_index("ix_promise_marks_queue", table_name="promise_marks", schema=S)
    op.drop_table("promise_marks", schema=S)
