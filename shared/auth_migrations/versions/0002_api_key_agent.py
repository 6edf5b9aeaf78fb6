"""api keys bound to an agent

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 21:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, and no rewrite of the table: every key made before this is unbound, as in v1.
    op.add_column(
        "api_keys", sa.Column("agent_id", sa.String(length=64), nullable=True), schema="auth"
    )


def downgrade() -> None:
    op.drop_column("api_keys", "agent_id", schema="auth")
