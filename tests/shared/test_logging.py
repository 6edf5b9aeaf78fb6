"""A failure's log line says where it failed, never whom it was about."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.logging import configure_logging

PHONE = "+358407654329"


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", json=True, process="pytest")
    yield stream
    monkeypatch.undo()
    configure_logging(level="WARNING", json=True, process="pytest")


def _handle(body: dict[str, str]) -> None:
    phone = body["phone"]
    raise RuntimeError(f"no route for a number of {len(phone)} characters")


def test_a_traceback_is_logged_without_the_local_variables_that_hold_personal_data(
    log_output: io.StringIO,
) -> None:
    try:
        _handle({"phone": PHONE})
    except RuntimeError:
        structlog.get_logger("test").exception("http.unhandled_error")

    line = json.loads(log_output.getvalue().splitlines()[-1])
    frames = line["exception"][0]["frames"]
    assert [frame["name"] for frame in frames][-1] == "_handle"
    assert line["exception"][0]["exc_value"] == "no route for a number of 13 characters"
    assert PHONE not in log_output.getvalue()


async def test_a_failed_statement_does_not_log_its_parameters(
    engine: AsyncEngine, log_output: io.StringIO
) -> None:
    with pytest.raises(DBAPIError) as failure:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT CAST(:phone AS text), 1 / 0"), {"phone": PHONE})
    structlog.get_logger("test").error("db.failed", error=str(failure.value), exc_info=True)

    assert "division by zero" in log_output.getvalue()
    assert PHONE not in log_output.getvalue()
