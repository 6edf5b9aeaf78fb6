"""events: the queue and the agent each is about

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "history"

# What ingest does for a new event (`services.history.service.event_queue` and
# `event_agent`), for the events stored before: a well-formed `data.queue`; else `default`
# for a callback's events (they all predate queues) and nothing for the rest. The agent is
# the actor when an agent acted, else `data.agent_id`. Written out rather than imported: a
# migration must keep meaning what it meant when it ran.
# tests/history/test_stats_by_queue.py stores the same events both ways and compares.
BACKFILL = sa.text(
    "UPDATE history.events SET"
    " queue = CASE"
    "  WHEN jsonb_typeof(data->'queue') = 'string'"
    "   AND data->>'queue' ~ '^[a-z0-9][a-z0-9_-]{0,39}$' THEN data->>'queue'"
    "  WHEN subject_kind = 'callback' THEN 'default'"
    " END,"
    " agent_id = CASE"
    "  WHEN actor_kind = 'agent' AND actor_id <> '' THEN actor_id"
    "  WHEN jsonb_typeof(data->'agent_id') = 'string'"
    "   AND length(data->>'agent_id') BETWEEN 1 AND 64 THEN data->>'agent_id'"
    " END"
    " WHERE subject_kind = 'callback' OR actor_kind = 'agent'"
    " OR data->'queue' IS NOT NULL OR data->'agent_id' IS NOT NULL"
)


def upgrade() -> None:
    op.add_column("events", sa.Column("queue", sa.String(length=40), nullable=True), schema=SCHEMA)
    op.add_column(
        "events", sa.Column("agent_id", sa.String(length=64), nullable=True), schema=SCHEMA
    )
    # One pass over the callback events; on a large table see docs/history.md first.
    op.execute(BACKFILL)
    # Statistics of one queue or one agent read their events by time.
    op.create_index(
        "ix_events_queue",
        "events",
        ["queue", "occurred_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("queue IS NOT NULL"),
    )
    op.create_index(
        "ix_events_agent",
        "events",
        ["agent_id", "occurred_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("agent_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_agent", table_name="events", schema=SCHEMA)
    op.drop_index("ix_events_queue", table_name="events", schema=SCHEMA)
    op.drop_column("events", "agent_id", schema=SCHEMA)
    op.drop_column("events", "queue", schema=SCHEMA)
