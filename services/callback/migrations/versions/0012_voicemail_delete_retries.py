"""Voicemail deletes at the provider that failed are retried (§11, issue #17).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.add_column(
        "voicemails",
        sa.Column("delete_tries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema=S,
    )
    op.add_column("voicemails", sa.Column("delete_due_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "voicemails", sa.Column("delete_abandoned_at", sa.DateTime(timezone=True)), schema=S
    )
    # Recordings an erasure already failed to delete (before this revision) are owed a try.
    op.execute(
        f"UPDATE {S}.voicemails SET delete_due_at = now() "
        "WHERE erased_at IS NOT NULL AND deleted_at IS NULL AND recording_url IS NOT NULL "
        "AND provider = 'twilio'"
    )
    op.create_index(
        "ix_voicemails_delete_due_at",
        "voicemails",
        ["delete_due_at"],
        postgresql_where=sa.text("delete_due_at IS NOT NULL"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("ix_voicemails_delete_due_at", table_name="voicemails", schema=S)
    op.drop_column("voicemails", "delete_abandoned_at", schema=S)
    op.drop_column("voicemails", "delete_due_at", schema=S)
    op.drop_column("voicemails", "delete_tries", schema=S)
