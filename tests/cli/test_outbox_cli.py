"""`ringback outbox list|replay`: dead rows found and given back to the relay, never shown whole."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import CallbackOutbox
from services.cli.main import build_parser
from services.cli.outbox import RowStatus
from services.history.models import HistoryOutbox
from services.intake.models import IntakeOutbox
from shared.outbox import OutboxMixin, row_values
from tests.cli.conftest import RunCli

Sessions = async_sessionmaker[AsyncSession]

PHONE = "+358401234567"
REFUSED = 'HTTP 422: {"title":"Unprocessable Content","detail":"queue is unknown"}'


@pytest.fixture
def env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        "RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"],
        "RINGBACK_DATA_DIR": str(tmp_path / "data"),
    }


async def _add(sessions: Sessions, model: type[OutboxMixin], **state: Any) -> int:
    """A row as the relay leaves it (`state`: dead_at, delivered_at, attempts, last_error)."""
    factory: Callable[..., OutboxMixin] = model
    values = row_values(
        destination="callback",
        path="/v1/callbacks",
        payload={"phone": PHONE, "name": "Maija Meikäläinen"},
        ordering_key=PHONE,
    )
    async with sessions() as session:
        row = factory(**{**values, **state})
        session.add(row)
        await session.commit()
        return row.id


async def _row(sessions: Sessions, model: type[OutboxMixin], row_id: int) -> OutboxMixin:
    async with sessions() as session:
        found = await session.scalar(select(model).where(model.id == row_id))
        assert found is not None
        return found


def _dead(error: str = REFUSED, attempts: int = 1) -> dict[str, Any]:
    return {"dead_at": datetime.now(UTC), "attempts": attempts, "last_error": error}


async def test_list_shows_dead_rows_without_their_payload(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, clean_db: None
) -> None:
    dead = await _add(sessions, IntakeOutbox, **_dead(attempts=3))
    await _add(sessions, CallbackOutbox)  # pending
    await _add(sessions, HistoryOutbox, delivered_at=datetime.now(UTC), attempts=1)

    run = await run_cli("outbox", "list", "--status", "dead", env=env)

    assert run.code == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split("  ")[0] == "ID"
    for column in ("SERVICE", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR", "CREATED (UTC)"):
        assert column in header
    assert len(rows) == 1
    assert rows[0].split()[:6] == [str(dead), "intake", "callback", "/v1/callbacks", "dead", "3"]
    assert "HTTP 422" in rows[0]
    assert PHONE not in run.out
    assert "Maija" not in run.out

    # Without --status: what is not delivered yet, from every outbox.
    everything = await run_cli("outbox", "list", env=env)
    statuses = sorted(line.split()[4] for line in everything.out.splitlines()[1:])
    assert statuses == ["dead", "pending"]
    only_history = await run_cli("outbox", "list", "--service", "history", env=env)
    assert only_history.out.strip() == "no outbox rows match"


async def test_replay_makes_a_dead_row_pending_for_the_relay(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, clean_db: None
) -> None:
    row_id = await _add(sessions, IntakeOutbox, **_dead(attempts=2))

    run = await run_cli("outbox", "replay", str(row_id), "--service", "intake", env=env)

    assert run.code == 0, run.err
    assert f"intake row {row_id}: pending again" in run.out
    row = await _row(sessions, IntakeOutbox, row_id)
    assert row.dead_at is None
    assert row.delivered_at is None
    assert row.available_at <= datetime.now(UTC) + timedelta(seconds=1)
    # What happened before stays readable until the relay tries again.
    assert (row.attempts, row.last_error) == (2, REFUSED)
    listed = await run_cli("outbox", "list", "--status", "pending", env=env)
    assert listed.out.splitlines()[1].split()[4] == "pending"


async def test_replaying_a_row_that_is_not_dead_is_refused(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, clean_db: None
) -> None:
    pending = await _add(sessions, CallbackOutbox, attempts=4, last_error="HTTP 503: busy")
    delivered = await _add(sessions, HistoryOutbox, delivered_at=datetime.now(UTC))

    run = await run_cli("outbox", "replay", str(pending), "--service", "callback", env=env)

    assert run.code == 1
    assert "is pending, not dead" in run.err
    assert "Traceback" not in run.err
    run = await run_cli("outbox", "replay", str(delivered), "--service", "history", env=env)
    assert run.code == 1
    assert "was delivered" in run.err
    run = await run_cli("outbox", "replay", "999999", env=env)
    assert run.code == 1
    assert "no outbox row 999999" in run.err
    assert (await _row(sessions, CallbackOutbox, pending)).available_at is not None


async def test_an_id_in_two_outboxes_needs_the_service_named(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, clean_db: None
) -> None:
    # Each outbox numbers its own rows: after a clean start both first rows are 1.
    intake = await _add(sessions, IntakeOutbox, **_dead())
    callback = await _add(sessions, CallbackOutbox, **_dead())
    assert intake == callback

    run = await run_cli("outbox", "replay", str(intake), env=env)

    assert run.code == 2
    assert "intake and callback" in run.err
    assert "--service" in run.err
    assert (await _row(sessions, IntakeOutbox, intake)).dead_at is not None


async def test_all_dead_replays_every_dead_row_but_not_those_an_erasure_withdrew(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, clean_db: None
) -> None:
    first = await _add(sessions, IntakeOutbox, **_dead())
    second = await _add(sessions, IntakeOutbox, **_dead())
    # What intake's erasure leaves of a row that named an erased person.
    withdrawn = await _add(
        sessions,
        IntakeOutbox,
        **_dead("withdrawn: personal data erased"),
        payload={"erased": True},
        ordering_key="erased",
    )

    run = await run_cli("outbox", "replay", "--all-dead", "--service", "intake", env=env)

    assert run.code == 0, run.err
    assert f"intake: 2 dead rows pending again ({first}, {second})" in run.out
    assert "intake: 1 dead row withdrawn by an erasure stay dead" in run.out
    assert (await _row(sessions, IntakeOutbox, first)).dead_at is None
    assert (await _row(sessions, IntakeOutbox, withdrawn)).dead_at is not None
    run = await run_cli("outbox", "replay", str(withdrawn), "--service", "intake", env=env)
    assert run.code == 1
    assert "erased" in run.err


def test_the_statuses_offered_are_the_statuses_a_row_has() -> None:
    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        [found] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen: argparse.ArgumentParser = found.choices[name]
        return chosen

    listing = sub(sub(build_parser(), "outbox"), "list")
    [status] = [a for a in listing._actions if a.dest == "status"]
    assert status.choices is not None
    assert sorted(status.choices) == sorted(RowStatus)
