"""The three service apps side by side, on this run's database and Redis, for security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.callback.app import create_app as create_callback
from services.callback.settings import CallbackSettings
from services.history.app import create_app as create_history
from services.history.settings import HistorySettings
from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from tests.conftest import SCHEMAS
from tests.support.signing import new_secret

SERVICE_NAMES = ("intake", "callback", "history")
WEBHOOK_SECRET = new_secret()
TWILIO_TOKEN = "twilio-security-token-0123456789"
CTI_TOKEN = "cti-security-token-0123456789abcdef"
PUBLIC_BASE_URL = "https://ringback.example.com"

Apps = dict[str, FastAPI]
Clients = dict[str, AsyncClient]


def build_apps(settings_kwargs: dict[str, Any], sink: Path, **intake_extra: Any) -> Apps:
    """Every service's app as production builds it, minus background relays and purges."""
    intake = IntakeSettings(
        **settings_kwargs,
        webhook_secrets=WEBHOOK_SECRET,
        twilio_auth_token=TWILIO_TOKEN,
        cti_token=CTI_TOKEN,
        public_base_url=PUBLIC_BASE_URL,
        **intake_extra,
    )
    callback = CallbackSettings(**settings_kwargs, sink_dir=sink, outbox_relay=False)
    history = HistorySettings(
        **settings_kwargs, history_erasure_relay_enabled=False, history_purge_enabled=False
    )
    return {
        "intake": create_intake(intake),
        "callback": create_callback(callback),
        "history": create_history(history),
    }


async def serve_all(stack: AsyncExitStack, apps: Apps) -> Clients:
    """Run each app's lifespan inside `stack` and give an in-process client for each."""
    clients: Clients = {}
    for name, app in apps.items():
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        clients[name] = await stack.enter_async_context(
            AsyncClient(transport=transport, base_url="http://test")
        )
    return clients


@pytest.fixture
async def clients(
    settings_kwargs: dict[str, Any], clean_db: None, tmp_path: Path
) -> AsyncIterator[Clients]:
    """A client per service, on an empty database, with generous abuse limits."""
    apps = build_apps(
        settings_kwargs,
        tmp_path / "sink",
        rate_limit_per_phone=10_000,
        rate_limit_per_ip=10_000,
        rate_limit_per_api_key=10_000,
    )
    async with AsyncExitStack() as stack:
        yield await serve_all(stack, apps)


@pytest.fixture(scope="module")
async def module_clients(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Clients]:
    """Like `clients`, shared by a module whose tests compare row counts rather than totals."""
    kwargs = {key.removeprefix("RINGBACK_").lower(): value for key, value in base_env.items()}
    apps = build_apps(
        kwargs,
        tmp_path_factory.mktemp("sink"),
        rate_limit_per_phone=100_000,
        rate_limit_per_ip=100_000,
        rate_limit_per_api_key=100_000,
    )
    async with AsyncExitStack() as stack:
        yield await serve_all(stack, apps)


@pytest.fixture
async def admin(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('admin', name='security-admin')}"}


RowCounts = dict[str, int]


@pytest.fixture
def row_counts(engine: AsyncEngine) -> Callable[[], Awaitable[RowCounts]]:
    """Rows per table of every service schema (API keys aside): what a refusal must not change."""

    async def count() -> RowCounts:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s) "
                        "AND tablename NOT IN ('alembic_version', 'api_keys') ORDER BY 1, 2"
                    ),
                    {"s": list(SCHEMAS)},
                )
            ).all()
            counts: RowCounts = {}
            for schema, table in tables:
                name = f'"{schema}"."{table}"'
                counts[name] = int((await conn.scalar(text(f"SELECT count(*) FROM {name}"))) or 0)
        return counts

    return count
