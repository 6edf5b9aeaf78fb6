"""Schemathesis against each service's own OpenAPI document: no 5xx, answers as documented.

The services run as real processes (lifespan, PostgreSQL and Redis real); schemathesis sends
generated requests with an admin key. Bounded: a few examples per operation, write endpoints
and lists only (the SSE stream never ends, webhooks and self-service links have other auth).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.apikeys import create_key
from shared.db import create_engine, create_session_factory
from shared.settings import CommonSettings
from tests.security.conftest import build_apps
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.e2e]

_PLACEHOLDER = {"database_url": "postgresql://u@127.0.0.1/x", "redis_url": "redis://127.0.0.1/0"}
_APPS = build_apps(_PLACEHOLDER, Path("/nonexistent"))
SKIP_PATHS = r"^/(healthz|readyz|metrics)$|^/v1/(webhooks|self|stream)"


# Deterministic, so the suite gives the same answer on every run. NUL characters are allowed:
# PostgreSQL cannot store them, and every service must refuse them with a 4xx.
_CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-x00": True, "deterministic": True}})


def _schema(service: str) -> Any:
    document = _APPS[service].openapi()
    return (
        schemathesis.openapi.from_dict(document, config=_CONFIG)
        .exclude(path_regex=SKIP_PATHS)
        .exclude(method="DELETE")
    )


INTAKE, CALLBACK, HISTORY = _schema("intake"), _schema("callback"), _schema("history")
FUZZ = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def stack(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("fuzz-logs")
    extra = {"RINGBACK_HISTORY_ERASURE_RELAY_ENABLED": "false", "RINGBACK_LOG_LEVEL": "WARNING"}
    with running_stack(base_env, logs, extra, ("history", "callback", "intake")) as running:
        yield running


@pytest.fixture(scope="module")
def admin(base_env: dict[str, str]) -> dict[str, str]:
    async def make() -> str:
        engine = create_engine(
            CommonSettings(database_url=base_env["RINGBACK_DATABASE_URL"]), application_name="fuzz"
        )
        try:
            async with create_session_factory(engine)() as session:
                _, key = await create_key(session, name="fuzz-admin", scopes=["admin"])
                await session.commit()
        finally:
            await engine.dispose()
        return key

    return {"Authorization": f"Bearer {asyncio.run(make())}"}


def _check(case: Any, stack: Stack, service: str, admin: dict[str, str]) -> None:
    case.call_and_validate(
        base_url=stack.url(service),
        headers=admin,
        checks=[not_a_server_error, response_schema_conformance],
    )


@INTAKE.parametrize()  # type: ignore[untyped-decorator]
@FUZZ
def test_intake(case: Any, stack: Stack, admin: dict[str, str]) -> None:
    _check(case, stack, "intake", admin)


@CALLBACK.parametrize()  # type: ignore[untyped-decorator]
@FUZZ
def test_callback(case: Any, stack: Stack, admin: dict[str, str]) -> None:
    _check(case, stack, "callback", admin)


@HISTORY.parametrize()  # type: ignore[untyped-decorator]
@FUZZ
def test_history(case: Any, stack: Stack, admin: dict[str, str]) -> None:
    _check(case, stack, "history", admin)
