"""The time spoken to a caller waiting in the phone queue (§11): `callbacks.told_by`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.add_column("callbacks", sa.Column("told_by", sa.DateTime(timezone=True)), schema=S)


def downgrade() -> None:
    op.drop_column("callbacks", "told_by", schema=S)
