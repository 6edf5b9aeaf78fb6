"""outbox traceparent

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The trace of the work that wrote the row, sent on with it. Nullable without a default:
    # PostgreSQL only changes the catalogue, so this is instant however long the table is.
    op.add_column(
        "outbox", sa.Column("traceparent", sa.String(length=55), nullable=True), schema="intake"
    )


def downgrade() -> None:
    op.drop_column("outbox", "traceparent", schema="intake")
