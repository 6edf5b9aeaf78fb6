"""A callback's slot is checked against its seat at COMMIT (issue #21).

The booking job writes the callback's slot before it takes the seat, so that the hot slot
row is locked for as short a time as possible (`booking.book_earliest`'s `seat_last`); the
seat, and a first seat's row, exist by the time the transaction commits.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "callback"


def upgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.callbacks ALTER CONSTRAINT fk_callbacks_queue_slot_bookings "
        "DEFERRABLE INITIALLY DEFERRED"
    )


def downgrade() -> None:
    op.execute(
        f"ALTER TABLE {S}.callbacks ALTER CONSTRAINT fk_callbacks_queue_slot_bookings "
        "NOT DEFERRABLE"
    )
