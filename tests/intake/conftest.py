from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.app import create_app
from services.intake.models import Inbound, IntakeOutbox
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi
from tests.support.signing import new_secret

TWILIO_TOKEN = "twilio-test-auth-token-0123456789"
CTI_TOKEN = "cti-test-token-0123456789abcdef"
PUBLIC_BASE_URL = "https://ringback.example.com"


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return new_secret()


@pytest.fixture
def intake_overrides() -> dict[str, Any]:
    """Settings a test module may change (rate limits, allow-list, ...)."""
    return {}


@pytest.fixture
def intake_settings(
    settings_kwargs: dict[str, Any], webhook_secret: str, intake_overrides: dict[str, Any]
) -> IntakeSettings:
    # A second, older secret is still accepted: rotation must not drop webhooks.
    values: dict[str, Any] = {
        **settings_kwargs,
        "webhook_secrets": f"{new_secret()},{webhook_secret}",
        "twilio_auth_token": TWILIO_TOKEN,
        "cti_token": CTI_TOKEN,
        "public_base_url": PUBLIC_BASE_URL,
    }
    values.update(intake_overrides)
    return IntakeSettings(**values)


@pytest.fixture
async def intake(intake_settings: IntakeSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for client in serve_asgi(create_app(intake_settings)):
        yield client


@pytest.fixture
def inbound_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[], Awaitable[list[Inbound]]]:
    async def rows() -> list[Inbound]:
        async with sessions() as session:
            return list((await session.scalars(select(Inbound).order_by(Inbound.id))).all())

    return rows


@pytest.fixture
def outbox_rows(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[], Awaitable[list[IntakeOutbox]]]:
    async def rows() -> list[IntakeOutbox]:
        async with sessions() as session:
            statement = select(IntakeOutbox).order_by(IntakeOutbox.id)
            return list((await session.scalars(statement)).all())

    return rows
