"""Voicemail (§11): what a call's legs know of the voicemail its caller left.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "intake"


def upgrade() -> None:
    op.add_column("call_legs", sa.Column("recording_sid", sa.String(length=64)), schema=S)
    op.add_column("call_legs", sa.Column("recording_url", sa.Text()), schema=S)
    op.add_column("call_legs", sa.Column("recording_duration", sa.Integer()), schema=S)
    op.add_column("call_legs", sa.Column("transcript", sa.Text()), schema=S)
    op.add_column(
        "call_legs",
        sa.Column(
            "transcript_forwarded", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        schema=S,
    )
    op.add_column("call_legs", sa.Column("voicemail_inbound_id", sa.String(length=36)), schema=S)


def downgrade() -> None:
    for column in (
        "voicemail_inbound_id",
        "transcript_forwarded",
        "transcript",
        "recording_duration",
        "recording_url",
        "recording_sid",
    ):
        op.drop_column("call_legs", column, schema=S)
