"""The outbox table's migration steps, written once for every service's Alembic history.

Intake, callback and history each keep an outbox (`shared.outbox.OutboxMixin`) in their own
schema, with their own Alembic history, so a change to the outbox is one revision per service.
Each such revision is two lines that call a step here with the service's schema:

    def upgrade() -> None:
        outbox_migrations.add_traceparent("intake")

    def downgrade() -> None:
        outbox_migrations.drop_traceparent("intake")

To change every outbox: change `OutboxMixin` (or `outbox_indexes`), add a step and its undo
below, and one such revision per service. A step is frozen once released: applied
databases were made by it, so never edit one, add the next.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

TABLE = "outbox"
# The rows the relay still has to deliver; every pending-row index is partial on this.
PENDING = "delivered_at IS NULL AND dead_at IS NULL"


def create_table(schema: str) -> None:
    """The outbox as first released (revision 0001), with its pending-row indexes."""
    op.create_table(
        TABLE,
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
        schema=schema,
    )
    op.create_index(
        "ix_outbox_pending",
        TABLE,
        ["available_at"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text(PENDING),
    )
    op.create_index(
        "ix_outbox_pending_key",
        TABLE,
        ["destination", "ordering_key", "id"],
        unique=False,
        schema=schema,
        postgresql_where=sa.text(PENDING),
    )


def drop_table(schema: str) -> None:
    """Undo `create_table`."""
    op.drop_index("ix_outbox_pending_key", table_name=TABLE, schema=schema)
    op.drop_index("ix_outbox_pending", table_name=TABLE, schema=schema)
    op.drop_table(TABLE, schema=schema)


def add_traceparent(schema: str) -> None:
    """The trace of the work that wrote the row, sent on with it (revision 0003)."""
    # Nullable without a default: PostgreSQL only changes the catalogue, so this is instant
    # however long the table is.
    op.add_column(
        TABLE, sa.Column("traceparent", sa.String(length=55), nullable=True), schema=schema
    )


def drop_traceparent(schema: str) -> None:
    """Undo `add_traceparent`."""
    op.drop_column(TABLE, "traceparent", schema=schema)


def add_pending_id_index(schema: str) -> None:
    """Pending rows in id order, the relay's batch order (revision 0004)."""
    # Without it the relay walks the primary key past every delivered row on each batch. On
    # a large table build it first with CREATE INDEX CONCURRENTLY (docs/operations.md,
    # Upgrading); this then finds it.
    op.create_index(
        "ix_outbox_pending_id",
        TABLE,
        ["id"],
        schema=schema,
        postgresql_where=sa.text(PENDING),
        if_not_exists=True,
    )


def drop_pending_id_index(schema: str) -> None:
    """Undo `add_pending_id_index`."""
    op.drop_index("ix_outbox_pending_id", table_name=TABLE, schema=schema)
