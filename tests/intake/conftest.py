from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import AsyncClient

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from tests.conftest import serve_asgi
from tests.support.signing import new_secret


@pytest.fixture(scope="session")
def webhook_secret() -> str:
    return new_secret()


@pytest.fixture
def intake_settings(settings_kwargs: dict[str, Any], webhook_secret: str) -> IntakeSettings:
    # A second, older secret is still accepted: rotation must not drop webhooks.
    return IntakeSettings(**settings_kwargs, webhook_secrets=f"{new_secret()},{webhook_secret}")


@pytest.fixture
async def intake(intake_settings: IntakeSettings, clean_db: None) -> AsyncIterator[AsyncClient]:
    async for client in serve_asgi(create_app(intake_settings)):
        yield client
