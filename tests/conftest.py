"""Fixtures every test may use: a database and Redis of this run's own, apps, keys, peers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.cli.migrate import upgrade
from shared.apikeys import create_key
from shared.db import create_engine, create_session_factory
from shared.logging import configure_logging
from shared.settings import CommonSettings
from tests.support.gateways import SmsGateway, SmtpInbox, sms_gateway, smtp_server
from tests.support.infra import TestDatabase, test_database, test_redis

SCHEMAS = ("auth", "intake", "callback", "history")


@pytest.fixture(scope="session")
def database() -> Iterator[TestDatabase]:
    with test_database() as db:
        upgrade(db.url)
        yield db


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with test_redis() as url:
        yield url


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    """A real HTTP server standing in for the SMS gateway (generic JSON)."""
    with sms_gateway() as g:
        yield g


@pytest.fixture
def inbox() -> Iterator[SmtpInbox]:
    """A real SMTP server (aiosmtpd) collecting what we send."""
    with smtp_server() as s:
        yield s


@pytest.fixture(scope="session")
def internal_key() -> str:
    return "rb_internal0000_" + secrets.token_urlsafe(32)


@pytest.fixture(scope="session")
def base_env(database: TestDatabase, redis_url: str, internal_key: str) -> dict[str, str]:
    """The environment a ringback process of this run is started with."""
    configure_logging(level="WARNING", json=True, process="pytest")
    return {
        "RINGBACK_ENVIRONMENT": "test",
        "RINGBACK_DATABASE_URL": database.url,
        "RINGBACK_REDIS_URL": redis_url,
        "RINGBACK_INTERNAL_API_KEY": internal_key,
        "RINGBACK_SELF_SERVICE_SECRET": "test-self-service-secret",
        "RINGBACK_QUEUE_NAME": f"ringback:test:{secrets.token_hex(4)}",
        "RINGBACK_LOG_LEVEL": "WARNING",
        # The site's SMS quiet hours (21:00-08:00) would hold reminders and "we tried" SMS in
        # a run at night; tests of quiet hours set them (tests/callback/test_quiet_hours.py).
        "RINGBACK_SMS_QUIET_HOURS": "off",
    }


@pytest.fixture
def settings_kwargs(base_env: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments that point any settings class at this run's infrastructure."""
    return {key.removeprefix("RINGBACK_").lower(): value for key, value in base_env.items()}


@pytest.fixture(scope="session")
async def engine(base_env: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    settings = CommonSettings(database_url=base_env["RINGBACK_DATABASE_URL"])
    eng = create_engine(settings, application_name="ringback.tests")
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
async def clean_db(engine: AsyncEngine, redis_url: str) -> None:
    """Empty every table of every schema (and this run's Redis) before the test."""
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname = ANY(:schemas) AND tablename <> 'alembic_version'"
            ),
            {"schemas": list(SCHEMAS)},
        )
        tables = [f'"{schema}"."{table}"' for schema, table in rows]
        if tables:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def make_key(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[..., Awaitable[str]]:
    """Create an API key with the given scopes; returns the plaintext key."""

    async def factory(*scopes: str, name: str = "test") -> str:
        async with sessions() as session:
            _, key = await create_key(session, name=name, scopes=list(scopes))
            await session.commit()
        return key

    return factory


async def serve_asgi(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """Run `app`'s lifespan and give an in-process client for it."""
    async with app.router.lifespan_context(app):
        # Like a real server: an unhandled error becomes the app's 500 answer, not a test crash.
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
