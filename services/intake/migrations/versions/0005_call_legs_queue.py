"""call legs: the queue an earlier event of the call named

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "call_legs", sa.Column("queue", sa.String(length=200), nullable=True), schema="intake"
    )


def downgrade() -> None:
    op.drop_column("call_legs", "queue", schema="intake")
