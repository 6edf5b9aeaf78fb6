"""erasure outbox and statistics indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 19:35:02.305982
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared import outbox_migrations

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "history"
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
    outbox_migrations.create_table(SCHEMA)
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
    outbox_migrations.drop_table(SCHEMA)
    op.drop_table("erasures", schema=SCHEMA)
