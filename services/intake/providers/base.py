"""What every provider adapter produces, whatever the telephony system said."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared.contracts import Language

Outcome = Literal["missed", "answered", "ignored"]


@dataclass(frozen=True, slots=True)
class CallReport:
    """One inbound call as intake understands it, before phone normalisation."""

    provider: str
    call_id: str
    outcome: Outcome
    caller: str | None
    callee: str | None
    occurred_at: datetime
    status: str
    queue: str | None = None
    # What the telephony system knows about the caller (e.g. from its CRM lookup), if anything.
    email: str | None = None
    name: str | None = None
    language: Language | None = None
    details: dict[str, Any] = field(default_factory=dict)


class PayloadRejected(Exception):
    """The payload was authentic but unusable; it is stored with this reason."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
