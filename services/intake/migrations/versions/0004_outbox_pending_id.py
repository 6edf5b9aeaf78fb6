"""outbox: an index of pending rows in id order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

from shared import outbox_migrations

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    outbox_migrations.add_pending_id_index("intake")


def downgrade() -> None:
    outbox_migrations.drop_pending_id_index("intake")
