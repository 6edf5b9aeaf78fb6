"""OpenTelemetry: one tracer provider per process, exporting spans over OTLP/HTTP when configured.

Off unless an endpoint is configured: then `shared.tracing.start_span` makes no OpenTelemetry
objects at all. `ringback serve|worker|relay` wrap their run in `tracing(settings, ...)`, which
flushes what is buffered when the process stops.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shared.settings import CommonSettings
from shared.tracing import install_tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACES_PATH = "/v1/traces"


def traces_endpoint(settings: CommonSettings, environ: Mapping[str, str]) -> str | None:
    """Where spans go: our setting, else the standard OpenTelemetry variables; None: nowhere.

    Like `OTEL_EXPORTER_OTLP_ENDPOINT`, ours is the collector's base URL (`/v1/traces` is
    added unless it is there already); `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    base = settings.otel_exporter_otlp_endpoint
    if not base:
        full = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if full:
            return full
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def create_tracer_provider(
    settings: CommonSettings, *, service: str, environ: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """A provider exporting to the configured collector, or None when none is configured."""
    environ = os.environ if environ is None else environ
    endpoint = traces_endpoint(settings, environ)
    if endpoint is None:
        return None
    # Imported only when traces are on: the SDK and the exporter take most of a second to load.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes = {
        "service.name": environ.get("OTEL_SERVICE_NAME") or f"ringback-{service}",
        "deployment.environment.name": settings.environment,
    }
    provider = TracerProvider(
        resource=Resource.create(attributes),
        # Parent-based: a request that arrives sampled (or not) stays so in every service.
        sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio)),
    )
    # Headers, timeout, compression and TLS files come from the standard OTEL_EXPORTER_OTLP_*
    # variables, which the exporter reads itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


@contextmanager
def tracing(
    settings: CommonSettings, *, service: str, environ: Mapping[str, str] | None = None
) -> Iterator[TracerProvider | None]:
    """Trace this process as `ringback-<service>` while the block runs; flush at the end."""
    provider = create_tracer_provider(settings, service=service, environ=environ)
    if provider is None:
        yield None
        return
    install_tracer(provider.get_tracer("ringback"))
    try:
        yield provider
    finally:
        install_tracer(None)
        # Sends what is still buffered (bounded by the exporter's timeout), then stops.
        provider.shutdown()


def flush_before_signal(provider: TracerProvider, sig: int = signal.SIGTERM) -> None:
    """On `sig`, flush the spans, then let the signal end the process as it would have.

    uvicorn raises the signal again once it has shut down, which ends the process before a
    `with tracing(...)` block around it can flush; this handler is what it raises it to.
    """

    def handler(signum: int, _frame: object) -> None:
        provider.shutdown()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(sig, handler)
