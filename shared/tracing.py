"""W3C Trace Context: parse, create and continue `traceparent` headers."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The trace this unit of work belongs to, and its own span id."""

    trace_id: str
    span_id: str
    flags: str = "01"

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span in the same trace, for an outgoing call."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The caller's trace, or None if absent or malformed (then we start a new one)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return TraceContext(match.group(1), match.group(2), match.group(3))


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8))


def clean_request_id(value: str | None) -> str:
    """The caller's request id if it is a sane token, else a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    return secrets.token_hex(16)


current_trace: ContextVar[TraceContext | None] = ContextVar("current_trace", default=None)
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
