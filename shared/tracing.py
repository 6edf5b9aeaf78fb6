"""W3C Trace Context: parse, create and continue `traceparent` headers; spans around work."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

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


# --- spans ----------------------------------------------------------------------------------
#
# Every unit of work (a request served, a call made, an outbox row delivered, a job run) goes
# through `start_span`. Without a tracer (no exporter configured) it only moves `current_trace`
# on, as before: a few ids and a ContextVar, no OpenTelemetry objects. With one, it is an
# OpenTelemetry span and `current_trace` is that span's context, so the trace id in our logs
# and headers is the exported one.

_tracer: otel_trace.Tracer | None = None


def install_tracer(tracer: otel_trace.Tracer | None) -> None:
    """Make `tracer` the process's tracer (None: spans off); see `shared.telemetry`."""
    global _tracer
    _tracer = tracer


def tracing_enabled() -> bool:
    return _tracer is not None


def current_traceparent() -> str | None:
    """The `traceparent` of the current unit of work, to hand to work done later."""
    trace = current_trace.get()
    return trace.traceparent() if trace else None


@contextmanager
def start_span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: TraceContext | None = None,
    root: bool = False,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    record: bool = True,
    bind_logs: bool = False,
    expected: tuple[type[BaseException], ...] = (),
    links: Sequence[TraceContext] = (),
) -> Iterator[otel_trace.Span]:
    """Run the block as a span; yields it (a no-op span when tracing is off or not sampled).

    The parent is `parent` (a caller's, a stored one) if given; else, unless `root`, the
    current trace; else a new trace. `record=False` makes an unsampled span that is never
    exported, nor are its children (health probes). `bind_logs` puts its trace id on log lines.
    An exception marks the span failed by its type only (messages may hold personal data),
    unless it is one of `expected` (arq's `Retry`). `links`: other traces the span also
    works for (a batch of rows, each written in a trace of its own).
    """
    tracer = _tracer if record else None
    if tracer is None:
        with _current(_own_trace(parent, root, sampled=record), bind_logs):
            yield otel_trace.INVALID_SPAN
        return
    span = tracer.start_span(
        name,
        context=_parent_context(parent, root),
        kind=kind,
        attributes=attributes,
        links=[otel_trace.Link(_span_context(link, remote=True)) for link in links],
        record_exception=False,
        set_status_on_exception=False,
    )
    try:
        with (
            otel_trace.use_span(span, record_exception=False, set_status_on_exception=False),
            _current(_trace_of(span), bind_logs),
        ):
            yield span
    except BaseException as exc:
        if span.is_recording() and not isinstance(exc, expected):
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        raise
    finally:
        span.end()


@contextmanager
def _current(trace: TraceContext, bind_logs: bool) -> Iterator[None]:
    token = current_trace.set(trace)
    logged = structlog.contextvars.bind_contextvars(trace_id=trace.trace_id) if bind_logs else {}
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**logged)
        current_trace.reset(token)


def _own_trace(parent: TraceContext | None, root: bool, *, sampled: bool) -> TraceContext:
    if parent is None and not root:
        parent = current_trace.get()
    if parent is None:
        trace = new_trace()
        return trace if sampled else TraceContext(trace.trace_id, trace.span_id, "00")
    child = parent.child()
    return child if sampled else TraceContext(child.trace_id, child.span_id, "00")


def _parent_context(parent: TraceContext | None, root: bool) -> otel_context.Context:
    remote = parent is not None
    if parent is None and not root:
        parent = current_trace.get()
        active = otel_trace.get_current_span().get_span_context()
        if parent is not None and active.is_valid and active.span_id == int(parent.span_id, 16):
            return otel_context.get_current()
    if parent is None:
        return otel_context.Context()  # an empty context: the span starts a new trace
    span_context = _span_context(parent, remote=remote)
    return otel_trace.set_span_in_context(NonRecordingSpan(span_context), otel_context.Context())


def _span_context(trace: TraceContext, *, remote: bool) -> SpanContext:
    return SpanContext(
        trace_id=int(trace.trace_id, 16),
        span_id=int(trace.span_id, 16),
        is_remote=remote,
        trace_flags=TraceFlags(int(trace.flags, 16)),
    )


def _trace_of(span: otel_trace.Span) -> TraceContext:
    context = span.get_span_context()
    return TraceContext(
        f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{context.trace_flags:02x}"
    )
