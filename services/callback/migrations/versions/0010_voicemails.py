"""Voicemails (§11): a message a caller left, keyed on their call.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.create_table(
        "voicemails",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("recording_sid", sa.String(length=64), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemails")),
        schema=S,
    )
    op.create_index(
        "uq_voicemails_call", "voicemails", ["provider", "call_id"], unique=True, schema=S
    )
    op.create_index("ix_voicemails_phone", "voicemails", ["phone"], schema=S)
    op.create_index("ix_voicemails_callback_id", "voicemails", ["callback_id"], schema=S)


def downgrade() -> None:
    op.drop_table("voicemails", schema=S)
