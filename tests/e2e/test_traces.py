"""Traces across real processes: one missed call is one trace, webhook to SMS, sent over OTLP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateways import sms_gateway, smtp_server
from tests.support.otlp import ReceivedSpan, otlp_collector
from tests.support.signing import body_of, call_event, new_secret, signed_headers
from tests.support.stack import delivering_to, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()
NAMES = ("history", "callback", "intake", "worker", "relay")


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


async def test_a_missed_call_is_one_trace_across_every_process(
    base_env: dict[str, str], clean_db: None, tmp_path: Path
) -> None:
    customer = {"email": "matti.virtanen@example.fi", "name": "Matti Virtanen", "language": "fi"}
    event = call_event(
        call_id="e2e-trace-1", metadata={"customer": customer}, **{"from": "040 765 4322"}
    )
    body = body_of(event)
    with otlp_collector() as collector, sms_gateway() as gateway, smtp_server() as inbox:
        extra = {
            "RINGBACK_OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "RINGBACK_WEBHOOK_SECRETS": SECRET,
            **delivering_to(gateway, inbox, tmp_path / "sink"),
        }
        with running_stack(base_env, tmp_path / "logs", extra, NAMES) as stack:
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    f"{stack.url('intake')}/v1/webhooks/generic",
                    content=body,
                    headers=signed_headers(SECRET, body),
                )
            assert answer.status_code == 202, answer.text
            [sms] = await asyncio.to_thread(gateway.wait_for, 1)
            await asyncio.to_thread(inbox.wait_for, 1)
            # The last history events leave through callback's outbox after the sends.
            await asyncio.sleep(1.5)
        # Leaving the stack stopped every process with SIGTERM; each flushed its spans.
        spans = list(collector.spans)

    [webhook] = [s for s in spans if s.name == "POST /v1/webhooks/generic"]
    trace_id = webhook.trace_id
    trace = [s for s in spans if s.trace_id == trace_id]
    by_name: dict[str, list[ReceivedSpan]] = {}
    for span in trace:
        by_name.setdefault(span.name, []).append(span)
    assert {
        "POST /v1/webhooks/generic",
        "outbox.deliver callback",
        "outbox.deliver history",
        "POST /v1/callbacks",
        "POST /v1/events",
        "book_and_confirm",
        "send_notification",
    } <= by_name.keys(), sorted(by_name)
    assert {s.service for s in trace} == {f"ringback-{name}" for name in NAMES}
    assert webhook.service == "ringback-intake"
    assert {s.service for s in by_name["outbox.deliver callback"]} == {"ringback-relay"}
    assert {s.service for s in by_name["POST /v1/callbacks"]} == {"ringback-callback"}
    assert {s.service for s in by_name["send_notification"]} == {"ringback-worker"}
    # One tree: every span but the first hangs under another span of the same trace.
    ids = {s.span_id for s in trace}
    orphans = [s.name for s in trace if s is not webhook and s.parent_span_id not in ids]
    assert orphans == []
    assert len(by_name["send_notification"]) >= 2, "the SMS and the email"
    assert sms.headers["traceparent"].split("-")[1] == trace_id

    # The trace id in the log lines is the exported one, in every process on the way.
    logs = {name: log_lines(tmp_path / "logs" / f"{name}.log") for name in NAMES}
    events = {
        (name, line["event"])
        for name in NAMES
        for line in logs[name]
        if line.get("trace_id") == trace_id
    }
    assert ("intake", "http.request") in events
    assert ("callback", "http.request") in events
    assert ("worker", "callback.notification.sent") in events

    token = re.search(r"/v1/self/([A-Za-z0-9._~-]+)", sms.json()["text"])
    assert token is not None
    personal = ["358407654322", "0407654322", "040 765", "matti", "virtanen", token.group(1)]
    for span in spans:
        text = span.text().lower()
        assert not [p for p in personal if p.lower() in text], span
