"""Voicemails (§11): reserved for the voicemail work; filled in by it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 02:30:00.000000
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
