"""Ceilings on what we send (self-service changes, refusals) and unverified contact points.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNVERIFIED = (
    ("unverified_email", sa.String(length=254)),
    ("unverified_name", sa.String(length=200)),
    ("unverified_message", sa.Text()),
    ("unverified_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for name, type_ in _UNVERIFIED:
        op.add_column("callbacks", sa.Column(name, type_, nullable=True), schema="callback")
    op.create_index(
        "ix_notifications_recipient_created",
        "notifications",
        ["recipient", "created_at"],
        unique=False,
        schema="callback",
    )
    op.create_table(
        "self_service_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callback.callbacks.id"],
            name=op.f("fk_self_service_changes_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_service_changes")),
        schema="callback",
    )
    op.create_index(
        "ix_self_service_changes_callback_at",
        "self_service_changes",
        ["callback_id", "created_at"],
        unique=False,
        schema="callback",
    )
    op.create_table(
        "refusals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("callback_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=48), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callback.callbacks.id"],
            name=op.f("fk_refusals_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
        schema="callback",
    )
    op.create_index("ix_refusals_created_at", "refusals", ["created_at"], schema="callback")
    op.create_index("ix_refusals_callback_id", "refusals", ["callback_id"], schema="callback")


def downgrade() -> None:
    op.drop_table("refusals", schema="callback")
    op.drop_table("self_service_changes", schema="callback")
    op.drop_index(
        "ix_notifications_recipient_created", table_name="notifications", schema="callback"
    )
    for name, _type in reversed(_UNVERIFIED):
        op.drop_column("callbacks", name, schema="callback")
