"""Intake's metrics are not public: in production the API port has no `/metrics`.

The review (issue #14): every app served `/metrics` on its API port, and intake's faces the
internet, so anyone could read its counters of refused signatures, abuse refusals and traffic.
In production `ringback serve intake` serves them on a port of its own, for the scraper.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.history.app import create_app as create_history
from services.history.settings import HistorySettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi
from tests.support.infra import free_port
from tests.support.stack import running_stack

# Prometheus text exposition (its version differs with the Accept header and the library).
PROMETHEUS_TEXT = "text/plain; version="


def _production_env(**extra: str) -> dict[str, str]:
    return {
        "RINGBACK_ENVIRONMENT": "production",
        "RINGBACK_SELF_SERVICE_SECRET": secrets.token_urlsafe(32),
        **extra,
    }


def _production(settings_kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_kwargs,
        "environment": "production",
        "self_service_secret": secrets.token_urlsafe(32),
    }


def _value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_production_intake_serves_metrics_only_on_its_metrics_port(
    base_env: dict[str, str], clean_db: None, tmp_path: Path
) -> None:
    metrics_port = free_port()
    extra = _production_env(
        RINGBACK_INTAKE_METRICS_PORT=str(metrics_port), RINGBACK_RATE_LIMIT_SELF_SERVICE_PER_IP="1"
    )
    with running_stack(base_env, tmp_path / "logs", extra, ("intake",)) as stack:
        intake = stack.url("intake")
        async with httpx.AsyncClient(timeout=10) as http:
            # Something worth counting: the second look at a link from one address is refused.
            statuses = [(await http.get(f"{intake}/v1/self/a-link")).status_code for _ in "ab"]

            public = await http.get(f"{intake}/metrics")
            scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")

    assert statuses[1] == 429
    assert public.status_code == 404
    assert public.headers["content-type"] == "application/problem+json"
    assert "ringback_" not in public.text

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith(PROMETHEUS_TEXT)
    text = scraped.text
    assert _value(text, "ringback_intake_rate_limited_total", limit="self_service_ip") == 1.0
    assert _value(text, "ringback_http_requests_total", service="intake", route="/v1/self/{token}")


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_in_development_the_api_port_still_serves_metrics(
    base_env: dict[str, str], clean_db: None, tmp_path: Path
) -> None:
    extra = {"RINGBACK_ENVIRONMENT": "development"}
    with running_stack(base_env, tmp_path / "logs", extra, ("intake",)) as stack:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{stack.url('intake')}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(PROMETHEUS_TEXT)
    assert "ringback_intake_rate_limited_total" in answer.text


@pytest.mark.parametrize(
    ("switch", "served"), [(None, False), (True, True), (False, False)], ids=str
)
async def test_an_operator_decides_for_intakes_api_port_in_production(
    settings_kwargs: dict[str, Any], switch: bool | None, served: bool
) -> None:
    settings = IntakeSettings(**_production(settings_kwargs), intake_metrics_on_api_port=switch)
    async for client in serve_asgi(create_intake(settings)):
        answer = await client.get("/metrics")
        assert answer.status_code == (200 if served else 404)


async def test_development_can_switch_the_api_ports_metrics_off(
    settings_kwargs: dict[str, Any],
) -> None:
    settings = IntakeSettings(**settings_kwargs, intake_metrics_on_api_port=False)
    async for client in serve_asgi(create_intake(settings)):
        answer = await client.get("/metrics")
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"


async def test_callback_and_history_keep_metrics_on_their_api_ports_in_production(
    settings_kwargs: dict[str, Any], tmp_path: Path
) -> None:
    callback = CallbackSettings(
        **_production(settings_kwargs), sink_dir=tmp_path, outbox_relay=False
    )
    history = HistorySettings(
        **_production(settings_kwargs),
        history_erasure_relay_enabled=False,
        history_purge_enabled=False,
    )
    for app in (create_callback(callback), create_history(history)):
        async for client in serve_asgi(app):
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(PROMETHEUS_TEXT)
