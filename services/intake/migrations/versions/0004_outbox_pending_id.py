"""outbox: an index of pending rows in id order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The relay takes pending rows in id order; without this it walks the primary key past
    # every delivered row on each batch. On a large table build it first with
    # CREATE INDEX CONCURRENTLY (docs/operations.md, Upgrading); this then finds it.
    op.create_index(
        "ix_outbox_pending_id",
        "outbox",
        ["id"],
        schema="intake",
        postgresql_where=sa.text("delivered_at IS NULL AND dead_at IS NULL"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_id", table_name="outbox", schema="intake")
