"""A callback's promise, `promised_by` (§14): the one declaration the API and the jobs read.

The promise is the end of the booked slot, else the time spoken or sent to the customer,
else the SLA deadline; the spoken time is `told_by`, the estimate said to a caller who asked
for the callback while waiting in the phone queue (§11). `promised_by_of` reads a row in
memory; `promised_by_sql` is the same rule for a query, so the at-risk job and
`GET /v1/callbacks` can never disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func

from services.callback.models import Callback

# In order of precedence; the last is never null.
PROMISE_SOURCES = ("slot_end", "told_by", "sla_deadline")


def promised_by_of(callback: Callback) -> datetime:
    moments: list[datetime | None] = [getattr(callback, name) for name in PROMISE_SOURCES]
    return next(m for m in moments if m is not None)


def promised_by_sql() -> ColumnElement[Any]:
    return func.coalesce(*(getattr(Callback, name) for name in PROMISE_SOURCES))
