"""call legs, webhook receipts, erasures

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:32:05.144937
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
        "call_legs",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("callee", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("missed_inbound_id", sa.String(length=36), nullable=True),
        sa.Column("answered_inbound_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "call_id", name=op.f("pk_call_legs")),
        schema="intake",
    )
    op.create_index(
        "ix_call_legs_phone",
        "call_legs",
        ["phone"],
        unique=False,
        schema="intake",
        postgresql_where=sa.text("phone IS NOT NULL"),
    )
    op.create_index(
        "ix_call_legs_updated_at", "call_legs", ["updated_at"], unique=False, schema="intake"
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        schema="intake",
    )
    op.create_table(
        "webhook_receipts",
        sa.Column("webhook_id", sa.String(length=256), nullable=False),
        sa.Column("inbound_id", sa.String(length=36), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhook_receipts")),
        schema="intake",
    )
    op.create_index(
        "ix_webhook_receipts_received_at",
        "webhook_receipts",
        ["received_at"],
        unique=False,
        schema="intake",
    )
    op.add_column(
        "inbound", sa.Column("email", sa.String(length=254), nullable=True), schema="intake"
    )
    op.add_column("inbound", sa.Column("query", sa.Text(), nullable=True), schema="intake")
    op.add_column(
        "inbound",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema="intake",
    )
    op.create_index(
        "ix_inbound_email",
        "inbound",
        ["email"],
        unique=False,
        schema="intake",
        postgresql_where=sa.text("email IS NOT NULL"),
    )
    op.create_index(
        "ix_inbound_phone",
        "inbound",
        ["phone"],
        unique=False,
        schema="intake",
        postgresql_where=sa.text("phone IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_inbound_phone",
        table_name="inbound",
        schema="intake",
        postgresql_where=sa.text("phone IS NOT NULL"),
    )
    op.drop_index(
        "ix_inbound_email",
        table_name="inbound",
        schema="intake",
        postgresql_where=sa.text("email IS NOT NULL"),
    )
    op.drop_column("inbound", "erased_at", schema="intake")
    op.drop_column("inbound", "query", schema="intake")
    op.drop_column("inbound", "email", schema="intake")
    op.drop_index("ix_webhook_receipts_received_at", table_name="webhook_receipts", schema="intake")
    op.drop_table("webhook_receipts", schema="intake")
    op.drop_table("erasures", schema="intake")
    op.drop_index("ix_call_legs_updated_at", table_name="call_legs", schema="intake")
    op.drop_index(
        "ix_call_legs_phone",
        table_name="call_legs",
        schema="intake",
        postgresql_where=sa.text("phone IS NOT NULL"),
    )
    op.drop_table("call_legs", schema="intake")
