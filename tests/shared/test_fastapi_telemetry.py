"""FastAPI's own tracing stays off, even when the process has a global OpenTelemetry provider.

FastAPI switches its instrumentation on by itself whenever a global provider exists (an
operator running under `opentelemetry-instrument`, say). Its server span records the raw
path, where a self-service token lives, and would duplicate ours. The probe runs in a
process of its own because a global provider can be set only once per process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOKEN = "secret-token-123"

PROBE = f"""
import asyncio, json, httpx
from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shared.service_app import create_service_app
from shared.settings import CommonSettings

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
router = APIRouter()

@router.get("/v1/self/{{token}}")
async def page(token: str) -> dict[str, str]:
    return {{"ok": "yes"}}

app = create_service_app(name="probe", settings=CommonSettings(), routers=[router])

async def main() -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return (await client.get("/v1/self/{TOKEN}")).status_code

status = asyncio.run(main())
spans = [[s.name, dict(s.attributes or {{}})] for s in exporter.get_finished_spans()]
print(json.dumps({{"status": status, "spans": spans}}))
"""


def test_no_fastapi_span_is_made_even_with_a_global_provider() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200
    assert result["spans"] == []
