"""Satisfaction surveys (§13): one question per reached callback, and the numbers that said STOP.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("queue", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("notification_id", sa.String(length=36), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'sent', 'answered', 'withdrawn')",
            name=op.f("ck_surveys_status"),
        ),
        sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f("ck_surveys_channel")),
        sa.CheckConstraint("score IS NULL OR score BETWEEN 1 AND 5", name=op.f("ck_surveys_score")),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            [f"{S}.callbacks.id"],
            name=op.f("fk_surveys_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("callback_id", name=op.f("uq_surveys_callback_id")),
        schema=S,
    )
    op.create_index(
        "ix_surveys_phone_created", "surveys", ["phone", "created_at"], unique=False, schema=S
    )
    op.create_table(
        "no_marketing",
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_no_marketing")),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("no_marketing", schema=S)
    op.drop_index("ix_surveys_phone_created", table_name="surveys", schema=S)
    op.drop_table("surveys", schema=S)
