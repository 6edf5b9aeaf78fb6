"""A failure's log line says where it failed, never whom it was about."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
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


_LOG_ONE_LINE = (
    "import structlog; from services.cli.main import _log_setup; _log_setup('ringback.test'); "
    "structlog.get_logger('test').info('demo.event', count=1)"
)


def _log_line(*, terminal: bool, env: dict[str, str]) -> str:
    """What one log call prints from a real process, to a terminal (a pty) or a pipe."""
    environ = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR"}}
    environ.pop("RINGBACK_LOG_JSON", None)
    environ.update(env)
    if not terminal:
        done = subprocess.run(
            [sys.executable, "-c", _LOG_ONE_LINE],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stderr.strip()
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-c", _LOG_ONE_LINE],
            env=environ,
            stderr=follower,
            stdout=subprocess.DEVNULL,
            timeout=60,
            check=True,
        )
        assert process.returncode == 0
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side is closed: all is read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode().strip()
    finally:
        os.close(leader)


def test_a_person_at_a_terminal_gets_readable_coloured_lines_and_a_pipe_gets_json() -> None:
    at_terminal = _log_line(terminal=True, env={})
    assert "demo.event" in at_terminal
    assert "\x1b[" in at_terminal  # coloured
    with pytest.raises(json.JSONDecodeError):
        json.loads(at_terminal)

    piped = json.loads(_log_line(terminal=False, env={}))
    assert piped["event"] == "demo.event"
    assert piped["count"] == 1


def test_the_setting_decides_when_it_is_set() -> None:
    assert json.loads(_log_line(terminal=True, env={"RINGBACK_LOG_JSON": "true"}))["count"] == 1
    readable = _log_line(terminal=False, env={"RINGBACK_LOG_JSON": "false"})
    assert "demo.event" in readable
    assert "\x1b[" not in readable  # a pipe gets no colour codes...
    forced = _log_line(terminal=False, env={"RINGBACK_LOG_JSON": "false", "FORCE_COLOR": "1"})
    assert "\x1b[" in forced  # ...unless asked, as `ringback run` asks for its children
    no_colour = _log_line(terminal=True, env={"NO_COLOR": "1"})
    assert "demo.event" in no_colour
    assert "\x1b[" not in no_colour
