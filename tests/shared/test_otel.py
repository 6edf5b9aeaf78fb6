"""OpenTelemetry traces: a span per request, peer call, outbox delivery and job, one trace."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from arq import Retry, func
from arq.connections import RedisSettings, create_pool
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.jobs import BOOK_AND_CONFIRM, SEND_NOTIFICATION, ArqNotificationQueue
from services.intake.models import IntakeOutbox
from shared.http import create_http_client
from shared.jobs import job_deserializer, job_serializer, traced_job
from shared.outbox import BatchRoute, OutboxRelay, enqueue
from shared.service_app import create_service_app
from shared.settings import CommonSettings
from shared.telemetry import create_tracer_provider, traces_endpoint, tracing
from shared.tracing import (
    current_trace,
    current_traceparent,
    install_tracer,
    parse_traceparent,
    start_span,
    tracing_enabled,
)
from tests.conftest import serve_asgi
from tests.support.burst import run_burst
from tests.support.live import live
from tests.support.otlp import otlp_collector

PHONE = "+358401234567"
EMAIL = "maija.meikalainen@example.fi"
TOKEN = "sst-" + "q" * 40
# What must never be in a span: the number in any notation, the address, the token.
PERSONAL = ("358401234567", "0401234567", "maija", "meikalainen", TOKEN)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, every finished span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install_tracer(provider.get_tracer("test"))
    yield exporter
    install_tracer(None)
    provider.shutdown()


def trace_of(span: ReadableSpan) -> str:
    return f"{span.context.trace_id:032x}"


def id_of(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


def traceparent_of(span: ReadableSpan) -> str:
    return f"00-{trace_of(span)}-{id_of(span)}-{span.context.trace_flags:02x}"


def parent_of(span: ReadableSpan) -> str | None:
    return f"{span.parent.span_id:016x}" if span.parent else None


def only(spans: Any, name: str) -> ReadableSpan:
    [found] = [s for s in spans if s.name == name]
    return found  # type: ignore[no-any-return]


def assert_no_personal_data(spans: Any) -> None:
    for span in spans:
        seen = " ".join(
            [
                span.name,
                *(f"{k}={v}" for k, v in (span.attributes or {}).items()),
                *(e.name for e in span.events),
                span.status.description or "",
            ]
        ).lower()
        assert not [p for p in PERSONAL if p.lower() in seen], (span.name, seen)


def _app(settings: CommonSettings, seen: dict[str, Any], peer_url: str | None) -> FastAPI:
    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def thing(thing_id: str, email: str | None = None) -> dict[str, str]:
        seen["trace"] = current_trace.get()
        seen["logged_trace_id"] = structlog.contextvars.get_contextvars().get("trace_id")
        if peer_url:
            async with create_http_client(settings, user_agent="test", peer="history") as c:
                answer = await c.get(f"{peer_url}/v1/peer/{thing_id}", params={"email": email})
            seen["peer_status"] = answer.status_code
        return {"ok": "yes"}

    @router.get("/v1/bug/{thing_id}")
    async def bug(thing_id: str) -> None:
        raise RuntimeError(f"cannot handle {thing_id}")

    return create_service_app(name="otel", settings=settings, routers=[router])


def _peer(settings: CommonSettings, seen: dict[str, Any]) -> FastAPI:
    router = APIRouter()

    @router.api_route("/v1/peer/{thing_id}", methods=["GET", "POST"])
    async def peer(thing_id: str, request: Request) -> dict[str, str]:
        seen.setdefault("traceparents", []).append(request.headers.get("traceparent"))
        seen["logged_trace_id"] = structlog.contextvars.get_contextvars().get("trace_id")
        return {"ok": "yes"}

    return create_service_app(name="peer", settings=settings, routers=[router])


async def _call_through_peer(
    settings: CommonSettings, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, dict[str, Any], dict[str, Any]]:
    """GET /v1/things/PHONE (with an email and a token in the query), which calls a peer."""
    seen: dict[str, Any] = {}
    peer_seen: dict[str, Any] = {}
    async with live(_peer(settings, peer_seen)) as peer:
        async for client in serve_asgi(_app(settings, seen, peer.url)):
            response = await client.get(
                f"/v1/things/{PHONE}", params={"email": EMAIL, "token": TOKEN}, headers=headers
            )
    return response, seen, peer_seen


async def test_a_request_and_its_peer_call_are_spans_of_the_callers_trace(
    spans: InMemorySpanExporter, settings_kwargs: dict[str, Any]
) -> None:
    response, seen, peer_seen = await _call_through_peer(
        CommonSettings(**settings_kwargs), {"traceparent": CALLER}
    )

    assert response.status_code == 200
    assert seen["peer_status"] == 200
    finished = spans.get_finished_spans()
    server = only(finished, "GET /v1/things/{thing_id}")
    client = only(finished, "GET")
    peer = only(finished, "GET /v1/peer/{thing_id}")
    assert (server.kind, client.kind, peer.kind) == (
        SpanKind.SERVER,
        SpanKind.CLIENT,
        SpanKind.SERVER,
    )
    assert {trace_of(s) for s in (server, client, peer)} == {CALLER_TRACE}
    assert parent_of(server) == CALLER_SPAN
    assert parent_of(client) == id_of(server)
    assert parent_of(peer) == id_of(client)
    assert peer_seen["traceparents"] == [traceparent_of(client)]
    # What the code and the log lines see is the exported span, not an id of our own.
    assert seen["trace"].span_id == id_of(server)
    assert seen["logged_trace_id"] == peer_seen["logged_trace_id"] == CALLER_TRACE
    assert server.attributes is not None
    assert client.attributes is not None
    assert server.attributes["http.route"] == "/v1/things/{thing_id}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.request.method"] == "GET"
    assert client.attributes["peer.service"] == "ringback-history"
    assert client.attributes["http.response.status_code"] == 200
    assert_no_personal_data(finished)


async def test_probes_are_not_traced(
    spans: InMemorySpanExporter, settings_kwargs: dict[str, Any]
) -> None:
    settings = CommonSettings(**settings_kwargs)
    async for client in serve_asgi(_app(settings, {}, None)):
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
    assert spans.get_finished_spans() == ()


async def test_a_failed_request_is_an_error_span_that_names_only_the_exception_type(
    spans: InMemorySpanExporter, settings_kwargs: dict[str, Any]
) -> None:
    async for client in serve_asgi(_app(CommonSettings(**settings_kwargs), {}, None)):
        assert (await client.get(f"/v1/bug/{PHONE}")).status_code == 500

    [span] = spans.get_finished_spans()
    assert span.name == "GET /v1/bug/{thing_id}"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.events == (), "an exception message may carry personal data: not recorded"
    assert_no_personal_data([span])


async def test_a_job_continues_the_trace_that_enqueued_it(
    spans: InMemorySpanExporter, redis_url: str
) -> None:
    queue_name = f"ringback:test:otel:{secrets.token_hex(4)}"
    ran: dict[str, Any] = {}

    async def job(ctx: dict[str, Any], some_id: str) -> str:
        ran[some_id] = (current_trace.get(), structlog.contextvars.get_contextvars())
        return "sent"

    redis = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )
    queue = ArqNotificationQueue(redis, queue_name=queue_name)
    with start_span("POST /v1/callbacks", kind=SpanKind.SERVER, root=True):
        enqueuer = current_traceparent()
        assert await queue.enqueue_notifications(["n-1"]) == 1
    # As the sweeper or an older release would: no trace to continue.
    assert await queue.enqueue_booking("c-1")
    await run_burst(
        redis,
        queue_name,
        [
            func(traced_job(SEND_NOTIFICATION, job), name=SEND_NOTIFICATION),
            func(traced_job(BOOK_AND_CONFIRM, job), name=BOOK_AND_CONFIRM),
        ],
    )

    finished = spans.get_finished_spans()
    request = only(finished, "POST /v1/callbacks")
    send = only(finished, SEND_NOTIFICATION)
    book = only(finished, BOOK_AND_CONFIRM)
    assert enqueuer == traceparent_of(request)
    assert send.kind is SpanKind.CONSUMER
    assert trace_of(send) == trace_of(request)
    assert parent_of(send) == id_of(request)
    assert send.attributes is not None
    assert send.attributes["messaging.message.id"] == "notify:n-1"
    assert send.attributes["arq.job_try"] == 1
    assert send.attributes["arq.job_result"] == "sent"
    trace, logged = ran["n-1"]
    assert trace.trace_id == logged["trace_id"] == trace_of(request)
    # A job enqueued without a trace starts its own: it runs, and belongs to no other trace.
    assert book.parent is None
    assert trace_of(book) != trace_of(request)
    assert ran["c-1"][0].trace_id == trace_of(book)


async def test_a_retry_is_not_a_failed_span(spans: InMemorySpanExporter) -> None:
    async def job(ctx: dict[str, Any], some_id: str) -> str:
        raise Retry(defer=1)

    with pytest.raises(Retry):
        await traced_job("flaky", job)({"job_id": "flaky:1", "job_try": 3}, "x", traceparent=CALLER)

    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["arq.job_result"] == "retry"
    assert span.attributes["arq.job_try"] == 3
    assert (trace_of(span), parent_of(span)) == (CALLER_TRACE, CALLER_SPAN)


async def test_an_outbox_row_carries_the_trace_that_wrote_it_to_the_receiver(
    spans: InMemorySpanExporter,
    settings_kwargs: dict[str, Any],
    sessions: async_sessionmaker[AsyncSession],
    clean_db: None,
) -> None:
    settings = CommonSettings(**settings_kwargs)
    peer_seen: dict[str, Any] = {}
    async with live(_peer(settings, peer_seen)) as peer:
        with start_span("POST /v1/webhooks/generic", kind=SpanKind.SERVER, root=True):
            async with sessions() as session:
                for destination in ("history", "callback"):
                    await enqueue(
                        session,
                        IntakeOutbox,
                        destination=destination,
                        path="/v1/peer/x",
                        payload={},
                        ordering_key="k1",
                    )
                await session.commit()
        async with sessions() as session:
            # Written outside any trace (before this release, or by a script).
            await enqueue(
                session,
                IntakeOutbox,
                destination="callback",
                path="/v1/peer/y",
                payload={},
                ordering_key="k2",
            )
            await session.commit()
        clients = {
            # Our own client, as `ringback intake-relay` has, and a plain one.
            "history": create_http_client(
                settings, user_agent="test", base_url=peer.url, peer="history"
            ),
            "callback": httpx.AsyncClient(base_url=peer.url),
        }
        relay = OutboxRelay(model=IntakeOutbox, session_factory=sessions, clients=clients)
        try:
            assert await relay.run_once() == 3
        finally:
            for client in clients.values():
                await client.aclose()

    async with sessions() as session:
        rows = (await session.scalars(select(IntakeOutbox).order_by(IntakeOutbox.id))).all()
    finished = spans.get_finished_spans()
    webhook = only(finished, "POST /v1/webhooks/generic")
    written = traceparent_of(webhook)
    assert [row.traceparent for row in rows] == [written, written, None]
    to_history = only(finished, "outbox.deliver history")
    assert to_history.kind is SpanKind.PRODUCER
    assert (trace_of(to_history), parent_of(to_history)) == (trace_of(webhook), id_of(webhook))
    assert to_history.attributes is not None
    assert to_history.attributes["outbox.id"] == rows[0].id
    assert to_history.attributes["outbox.delivered"] is True
    [call] = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert parent_of(call) == id_of(to_history)
    received = [s for s in finished if s.name == "POST /v1/peer/{thing_id}"]
    by_parent = {parent_of(s): s for s in received}
    assert trace_of(by_parent[id_of(call)]) == trace_of(webhook), "the receiver continues it"
    to_callback = [s for s in finished if s.name == "outbox.deliver callback"]
    continued = [s for s in to_callback if s.parent is not None]
    [fresh] = [s for s in to_callback if s.parent is None]
    [plain] = continued
    assert (trace_of(plain), parent_of(plain)) == (trace_of(webhook), id_of(webhook))
    # A plain client sends the delivery span itself, and the receiver continues it too.
    assert trace_of(by_parent[id_of(plain)]) == trace_of(webhook)
    assert trace_of(by_parent[id_of(fresh)]) == trace_of(fresh) != trace_of(webhook)
    assert sorted(tp.split("-")[1] for tp in peer_seen["traceparents"]) == sorted(
        [trace_of(webhook), trace_of(webhook), trace_of(fresh)]
    )


async def test_a_batch_delivery_continues_the_first_rows_trace_and_links_the_others(
    spans: InMemorySpanExporter,
    settings_kwargs: dict[str, Any],
    sessions: async_sessionmaker[AsyncSession],
    clean_db: None,
) -> None:
    settings = CommonSettings(**settings_kwargs)
    peer_seen: dict[str, Any] = {}
    async with live(_peer(settings, peer_seen)) as peer:
        for call in ("first", "second"):
            with start_span(f"POST {call}", kind=SpanKind.SERVER, root=True):
                async with sessions() as session:
                    await enqueue(
                        session,
                        IntakeOutbox,
                        destination="history",
                        path="/v1/peer/x",
                        payload={},
                        ordering_key=call,
                    )
                    await session.commit()
        client = create_http_client(settings, user_agent="test", base_url=peer.url)
        relay = OutboxRelay(
            model=IntakeOutbox,
            session_factory=sessions,
            clients={"history": client},
            batch_routes={
                "history": BatchRoute("/v1/peer/x", "/v1/peer/batch", "items", max_items=10)
            },
        )
        try:
            assert await relay.run_once() == 2
        finally:
            await client.aclose()

    finished = spans.get_finished_spans()
    first, second = only(finished, "POST first"), only(finished, "POST second")
    delivery = only(finished, "outbox.deliver history")
    assert (trace_of(delivery), parent_of(delivery)) == (trace_of(first), id_of(first))
    assert [(f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") for link in
            delivery.links] == [(trace_of(second), id_of(second))]  # fmt: skip
    assert delivery.attributes is not None
    assert delivery.attributes["outbox.batch_size"] == 2
    [sent] = peer_seen["traceparents"]
    assert sent.split("-")[1] == trace_of(first), "the receiver continues the first trace"


async def test_without_an_exporter_nothing_is_exported_and_the_trace_still_flows(
    settings_kwargs: dict[str, Any],
) -> None:
    settings = CommonSettings(**settings_kwargs, otel_exporter_otlp_endpoint=None)
    with otlp_collector() as collector, tracing(settings, service="intake", environ={}) as on:
        assert on is None
        assert not tracing_enabled()
        response, seen, peer_seen = await _call_through_peer(settings, {"traceparent": CALLER})
    assert response.status_code == 200
    assert collector.posts == []
    # As before OpenTelemetry: the caller's trace id in every log line and on every call.
    assert seen["logged_trace_id"] == peer_seen["logged_trace_id"] == CALLER_TRACE
    [sent] = peer_seen["traceparents"]
    assert sent.startswith(f"00-{CALLER_TRACE}-")
    assert sent != CALLER


async def test_spans_reach_a_collector_over_otlp_http(settings_kwargs: dict[str, Any]) -> None:
    with otlp_collector() as collector:
        settings = CommonSettings(**settings_kwargs, otel_exporter_otlp_endpoint=collector.url)
        with tracing(settings, service="intake", environ={}):
            assert tracing_enabled()
            response, seen, _ = await _call_through_peer(settings, {"traceparent": CALLER})
        # Leaving the block flushed the batch: the spans are there without waiting.
        received = list(collector.spans)
    assert not tracing_enabled()
    assert response.status_code == 200
    assert {path for path, _ in collector.posts} == {"/v1/traces"}
    assert {h["content-type"] for _, h in collector.posts} == {"application/x-protobuf"}
    assert {s.service for s in received} == {"ringback-intake"}
    names = sorted(s.name for s in received)
    assert names == ["GET", "GET /v1/peer/{thing_id}", "GET /v1/things/{thing_id}"]
    assert {s.trace_id for s in received} == {CALLER_TRACE}
    server = next(s for s in received if s.name == "GET /v1/things/{thing_id}")
    assert server.kind == "server"
    assert server.parent_span_id == CALLER_SPAN
    assert server.attributes["http.route"] == "/v1/things/{thing_id}"
    assert seen["logged_trace_id"] == CALLER_TRACE
    for span in received:
        assert not [p for p in PERSONAL if p.lower() in span.text().lower()], span


async def test_a_sample_ratio_of_zero_exports_no_new_trace_but_keeps_a_sampled_callers(
    settings_kwargs: dict[str, Any],
) -> None:
    with otlp_collector() as collector:
        settings = CommonSettings(
            **settings_kwargs, otel_exporter_otlp_endpoint=collector.url, otel_sample_ratio=0.0
        )
        with tracing(settings, service="intake", environ={}):
            response, seen, peer_seen = await _call_through_peer(settings)
            assert response.status_code == 200
            [sent] = peer_seen["traceparents"]
            unsampled = parse_traceparent(sent)
            assert unsampled is not None
            assert int(unsampled.flags, 16) & 1 == 0, "the peer is told not to record it either"
            assert seen["logged_trace_id"] == unsampled.trace_id == peer_seen["logged_trace_id"]
            # A caller that sampled its trace keeps it sampled here (parent-based).
            await _call_through_peer(settings, {"traceparent": CALLER})
        received = list(collector.spans)
    assert received, "the caller's sampled trace is exported"
    assert {s.trace_id for s in received} == {CALLER_TRACE}


@pytest.mark.parametrize(
    ("ours", "environ", "expected"),
    [
        (None, {}, None),
        ("", {}, None),
        ("http://collector:4318", {}, "http://collector:4318/v1/traces"),
        ("http://collector:4318/", {}, "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", {}, "https://otel.example/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http://c:4318/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t"}, "http://c:4318/t"),
        (
            "http://ours:4318",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            "http://ours:4318/v1/traces",
        ),
        ("http://ours:4318", {"OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_where_spans_go(ours: str | None, environ: dict[str, str], expected: str | None) -> None:
    settings = CommonSettings(otel_exporter_otlp_endpoint=ours)
    assert traces_endpoint(settings, environ) == expected


def test_the_service_name_is_ours_unless_otel_service_name_is_set() -> None:
    settings = CommonSettings(otel_exporter_otlp_endpoint="http://127.0.0.1:9")
    for environ, expected in (({}, "ringback-relay"), ({"OTEL_SERVICE_NAME": "edge"}, "edge")):
        provider = create_tracer_provider(settings, service="relay", environ=environ)
        assert provider is not None
        assert provider.resource.attributes["service.name"] == expected
        provider.shutdown()


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="otel_exporter_otlp_endpoint"):
        CommonSettings(otel_exporter_otlp_endpoint="collector:4318")
