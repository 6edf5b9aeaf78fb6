"""An idle relay is silent at INFO and says so at DEBUG, once per pass."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import IntakeOutbox
from shared.outbox import OutboxRelay


def _events(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (record.levelno, str(record.msg.get("event")))
        for record in caplog.records
        if record.name == "ringback.outbox" and isinstance(record.msg, dict)
    ]


async def _idle_for(sessions: async_sessionmaker[AsyncSession], seconds: float) -> None:
    relay = OutboxRelay(model=IntakeOutbox, session_factory=sessions, clients={}, poll_seconds=0.02)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await relay.run(stop)


async def test_idle_passes_log_at_debug_only(
    base_env: dict[str, str],
    clean_db: None,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await _idle_for(sessions, 0.2)
    assert _events(caplog) == [], "an idle relay fills a terminal at INFO"

    caplog.clear()
    caplog.set_level(logging.DEBUG)
    await _idle_for(sessions, 0.2)
    idle = _events(caplog)
    assert len(idle) >= 2
    assert set(idle) == {(logging.DEBUG, "outbox.relay.idle")}
