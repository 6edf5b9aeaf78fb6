"""events and customers

Revision ID: 0001
Revises:
Create Date: 2026-11-24 18:56:04.522369
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "history"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=2), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["history.customers.id"],
            name=op.f("fk_customers_merged_into_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        schema=SCHEMA,
    )
    # Partial: most customers have no external id and are not merged.
    op.create_index(
        "ix_customers_external_id",
        "customers",
        ["external_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "ix_customers_merged_into",
        "customers",
        ["merged_into"],
        schema=SCHEMA,
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )

    op.create_table(
        "identities",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=254), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('phone', 'email')", name=op.f("ck_identities_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["history.customers.id"],
            name=op.f("fk_identities_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("kind", "value", name=op.f("pk_identities")),
        schema=SCHEMA,
    )
    op.create_index(op.f("ix_identities_customer_id"), "identities", ["customer_id"], schema=SCHEMA)

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("subject_kind", sa.String(length=32), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("actor_kind", sa.String(length=32), nullable=True),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["history.customers.id"],
            name=op.f("fk_events_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("seq", name=op.f("uq_events_seq")),
        schema=SCHEMA,
    )
    # The timeline, newest first, keyset-paginated on (occurred_at, seq).
    op.create_index(
        "ix_events_timeline",
        "events",
        ["customer_id", sa.literal_column("occurred_at DESC"), sa.literal_column("seq DESC")],
        schema=SCHEMA,
    )
    # The timeline filtered by channel or by type.
    op.create_index(
        "ix_events_customer_channel",
        "events",
        [
            "customer_id",
            "channel",
            sa.literal_column("occurred_at DESC"),
            sa.literal_column("seq DESC"),
        ],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_events_customer_type",
        "events",
        [
            "customer_id",
            "type",
            sa.literal_column("occurred_at DESC"),
            sa.literal_column("seq DESC"),
        ],
        schema=SCHEMA,
    )
    # "Where it stands": the latest event of each of a customer's callbacks.
    op.create_index(
        "ix_events_customer_callbacks",
        "events",
        [
            "customer_id",
            "subject_id",
            sa.literal_column("occurred_at DESC"),
            sa.literal_column("seq DESC"),
        ],
        schema=SCHEMA,
        postgresql_where=sa.text("subject_kind = 'callback'"),
    )

    op.create_table(
        "customer_activity",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["history.customers.id"],
            name=op.f("fk_customer_activity_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "channel", "direction", "type", name=op.f("pk_customer_activity")
        ),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("customer_activity", schema=SCHEMA)
    op.drop_index("ix_events_customer_callbacks", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_customer_type", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_customer_channel", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_timeline", table_name="events", schema=SCHEMA)
    op.drop_table("events", schema=SCHEMA)
    op.drop_index(op.f("ix_identities_customer_id"), table_name="identities", schema=SCHEMA)
    op.drop_table("identities", schema=SCHEMA)
    op.drop_index("ix_customers_merged_into", table_name="customers", schema=SCHEMA)
    op.drop_index("ix_customers_external_id", table_name="customers", schema=SCHEMA)
    op.drop_table("customers", schema=SCHEMA)
