"""inbound and outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-24 18:54:59.980390
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
        "inbound",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_truncated", sa.Boolean(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound")),
        schema="intake",
    )
    op.create_index(
        "ix_inbound_status_received_at",
        "inbound",
        ["status", "received_at"],
        unique=False,
        schema="intake",
    )
    op.create_index(
        "uq_inbound_provider_external_id",
        "inbound",
        ["provider", "external_id"],
        unique=True,
        schema="intake",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    outbox_migrations.create_table("intake")


def downgrade() -> None:
    outbox_migrations.drop_table("intake")
    op.drop_index(
        "uq_inbound_provider_external_id",
        table_name="inbound",
        schema="intake",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.drop_index("ix_inbound_status_received_at", table_name="inbound", schema="intake")
    op.drop_table("inbound", schema="intake")
