"""arq jobs: JSON serialization (never pickle, so a job is data and not code) and their traces.

A job is enqueued with the `traceparent` of the work that enqueued it (an id, not personal
data) as a keyword argument, `traceparent=current_traceparent()`, and `traced_job` runs it
as a span continuing that trace. A job without one (a cron job, one enqueued before this
existed) starts a trace of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from arq.typing import WorkerCoroutine
from opentelemetry.trace import SpanKind

from shared.jsonutil import dumps, loads
from shared.tracing import parse_traceparent, start_span

JobFunction = Callable[..., Awaitable[Any]]


def job_serializer(value: dict[str, Any]) -> bytes:
    return dumps(value)


def job_deserializer(data: bytes) -> dict[str, Any]:
    value = loads(data)
    assert isinstance(value, dict)
    return value


def traced_job(name: str, function: JobFunction) -> WorkerCoroutine:
    """`function` run as a span named `name` that continues the enqueuer's trace."""

    async def run(
        ctx: dict[str, Any], *args: Any, traceparent: str | None = None, **kw: Any
    ) -> Any:
        attributes: dict[str, str | int] = {"messaging.system": "arq"}
        if ctx.get("job_id"):
            attributes["messaging.message.id"] = str(ctx["job_id"])
        if ctx.get("job_try"):
            attributes["arq.job_try"] = int(ctx["job_try"])
        with start_span(
            name,
            kind=SpanKind.CONSUMER,
            parent=parse_traceparent(traceparent),
            root=True,
            attributes=attributes,
            bind_logs=True,
            # A retry is the job working as designed, not a failure of the span.
            expected=(Retry,),
        ) as span:
            try:
                result = await function(ctx, *args, **kw)
            except Retry:
                span.set_attribute("arq.job_result", "retry")
                raise
            # Our jobs return a short outcome ("sent", "not due") or a count, never personal data.
            if span.is_recording() and isinstance(result, str | int):
                span.set_attribute("arq.job_result", result)
            return result

    run.__name__ = run.__qualname__ = name
    return run
