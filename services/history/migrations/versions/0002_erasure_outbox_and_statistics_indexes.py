"""erasure outbox and statistics indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:35:02.305982
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "history"
PENDING = sa.text("delivered_at IS NULL AND dead_at IS NULL")
IS_CALLBACK = sa.text("subject_kind = 'callback'")


def upgrade() -> None:
    # The audit line of an erasure: a customer id, a time and counts, no personal data.
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_erasures_customer_id")),
        schema=SCHEMA,
    )
    # Erasure requests on their way to callback and intake.
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=200), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("ordering_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_outbox_pending", "outbox", ["available_at"], schema=SCHEMA, postgresql_where=PENDING
    )
    op.create_index(
        "ix_outbox_pending_key",
        "outbox",
        ["destination", "ordering_key", "id"],
        schema=SCHEMA,
        postgresql_where=PENDING,
    )
    op.add_column(
        "customers",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    # Statistics and retention read events by time across all customers; statistics also
    # read every event of one callback. On a large existing table, build these two by hand
    # with CREATE INDEX CONCURRENTLY before upgrading (docs/history.md).
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"], schema=SCHEMA)
    op.create_index(
        "ix_events_callback_subject",
        "events",
        ["subject_id", "occurred_at"],
        schema=SCHEMA,
        postgresql_where=IS_CALLBACK,
    )


def downgrade() -> None:
    op.drop_index("ix_events_callback_subject", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_occurred_at", table_name="events", schema=SCHEMA)
    op.drop_column("customers", "erased_at", schema=SCHEMA)
    op.drop_index("ix_outbox_pending_key", table_name="outbox", schema=SCHEMA)
    op.drop_index("ix_outbox_pending", table_name="outbox", schema=SCHEMA)
    op.drop_table("outbox", schema=SCHEMA)
    op.drop_table("erasures", schema=SCHEMA)
