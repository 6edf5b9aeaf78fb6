"""outbox traceparent

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:25:00.000000
"""

from collections.abc import Sequence

from shared import outbox_migrations

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_migrations.add_traceparent("intake")


def downgrade() -> None:
    outbox_migrations.drop_traceparent("intake")
