"""`ringback demo` on a running stack: the confirmation reaches the customer in their language,
the demo finds where `make run` listens, and it keeps one key of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.cli.demo import demo_urls
from services.cli.devstate import forget_run, listen_urls, record_run
from services.cli.runner import ready_banner
from shared.apikeys import ApiKey, find_principal
from tests.cli.conftest import RunCli
from tests.support.signing import new_secret
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()
SMS_SECRET = new_secret()


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    # The development sink, as in `make run`: the demo shows what was "sent" from it.
    extra = {
        "RINGBACK_WEBHOOK_SECRETS": SECRET,
        "RINGBACK_SINK_DIR": str(tmp_path / "sink"),
        # What `make run` sets for the demo's survey (services/cli/devstate.py).
        "RINGBACK_SURVEY_FROM": "+447700900123",
        "RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS": SMS_SECRET,
    }
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


async def test_an_estonian_caller_gets_the_confirmation_in_estonian(
    stack: Stack, make_key: Callable[..., Awaitable[str]], run_cli: RunCli
) -> None:
    key = await make_key("history:read", "callbacks:read")

    run = await run_cli(
        "demo",
        "--language",
        "et",
        "--timeout",
        "60",
        env={**stack.env, "RINGBACK_DEMO_API_KEY": key},
    )

    assert run.code == 0, run.out + run.err
    assert "missed call from +372 5" in run.out
    # The SMS and the email, each in Estonian, with the time written the Estonian way.
    assert "Tere, Mari! Saime teie soovi kätte. Helistame teile esimesel võimalusel" in run.out
    assert "Subject: Teie tagasihelistamise soov on vastu võetud" in run.out
    assert " kell " in run.out
    # The call named the billing queue (and dialed its number): the callback waits there.
    assert "is in queue 'billing': " in run.out
    assert "language et" in run.out
    # It ends as DESIGN §13 reads: the agent reaches Mari, the survey goes out in Estonian from
    # the survey's number, her "5 kiitos" is a 5 on the timeline, and the wallboard counts it.
    assert "demo-agent calls Mari back" in run.out
    assert "← 201 callback completed" in run.out
    assert "From: +447700900123" in run.out or "from +447700900123" in run.out.lower()
    assert "survey_answered    score 5, comment 'kiitos', agent demo-agent" in run.out
    assert "Wallboard of queue 'billing'" in run.out
    assert "CSAT today 5.0 from 1 answer(s) (goal 4.2: met)" in run.out


def test_the_demo_speaks_the_sites_default_unless_told() -> None:
    from services.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).language is None
    assert parser.parse_args(["demo", "--language", "et"]).language == "et"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--language", "de"])


def _without_ringback_ports(monkeypatch: pytest.MonkeyPatch, data: Path) -> None:
    """A second terminal: none of `make run`'s variables, the same `.data/` (here: the test's)."""
    for name in list(os.environ):
        if name.startswith("RINGBACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RINGBACK_DATA_DIR", str(data))


def test_the_demo_finds_the_ports_make_run_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_ringback_ports(monkeypatch, tmp_path / "data")
    assert demo_urls() == {
        "intake": "http://127.0.0.1:8001",
        "callback": "http://127.0.0.1:8002",
        "history": "http://127.0.0.1:8003",
    }
    # `make run` started with other ports records where it listens, as it does.
    run_env = {"RINGBACK_INTAKE_PORT": "9101", "RINGBACK_HISTORY_PORT": "9103"}
    record_run(listen_urls(run_env))

    assert demo_urls() == {
        "intake": "http://127.0.0.1:9101",
        "callback": "http://127.0.0.1:8002",
        "history": "http://127.0.0.1:9103",
    }
    # What this terminal's environment says wins over the record.
    monkeypatch.setenv("RINGBACK_INTAKE_PORT", "9201")
    monkeypatch.setenv("RINGBACK_HISTORY_URL", "http://history.test:9999/")
    assert demo_urls()["intake"] == "http://127.0.0.1:9201"
    assert demo_urls()["history"] == "http://history.test:9999"
    monkeypatch.delenv("RINGBACK_INTAKE_PORT")
    monkeypatch.delenv("RINGBACK_HISTORY_URL")

    # Once `make run` has stopped, its record is gone and the defaults apply again.
    forget_run()
    assert demo_urls()["intake"] == "http://127.0.0.1:8001"


def test_a_record_left_by_a_killed_run_is_not_believed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_ringback_ports(monkeypatch, tmp_path / "data")
    record_run(listen_urls({"RINGBACK_INTAKE_PORT": "9101"}))
    record = tmp_path / "data" / "run.json"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    record.write_text(json.dumps({**json.loads(record.read_text()), "pid": int(gone)}))

    assert demo_urls()["intake"] == "http://127.0.0.1:8001"


def test_the_ready_banner_names_the_console_and_the_port_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_ringback_ports(monkeypatch, tmp_path / "data")
    env = {"RINGBACK_HISTORY_PORT": "9103", "RINGBACK_SINK_DIR": str(tmp_path / "sink")}

    banner = "\n".join(ready_banner(env, listen_urls(env)))

    assert "history   http://127.0.0.1:9103" in banner
    assert "console   http://127.0.0.1:9103/console/" in banner
    for variable in ("RINGBACK_INTAKE_PORT", "RINGBACK_CALLBACK_PORT", "RINGBACK_HISTORY_PORT"):
        assert variable in banner


async def _demo_keys(sessions: async_sessionmaker[AsyncSession]) -> list[ApiKey]:
    async with sessions() as session:
        return list((await session.scalars(select(ApiKey).where(ApiKey.name == "demo"))).all())


async def test_a_second_demo_reuses_its_key_and_a_stale_one_is_replaced(
    stack: Stack,
    run_cli: RunCli,
    sessions: async_sessionmaker[AsyncSession],
    make_key: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Remembered from a database since reset: well formed, known nowhere.
    stale = "rb_0123456789ab_" + "x" * 43
    (data / "dev-secrets.json").write_text(json.dumps({"RINGBACK_DEMO_API_KEY": stale}))
    users = await make_key("history:read", name="someone's")
    env = {**stack.env, "RINGBACK_DATA_DIR": str(data)}

    first = await run_cli("demo", "--timeout", "30", env=env)

    assert first.code == 0, first.out + first.err
    [key] = await _demo_keys(sessions)
    assert key.revoked_at is None
    remembered = json.loads((data / "dev-secrets.json").read_text())["RINGBACK_DEMO_API_KEY"]
    assert remembered != stale

    second = await run_cli("demo", "--timeout", "30", env=env)

    assert second.code == 0, second.out + second.err
    assert [row.id for row in await _demo_keys(sessions)] == [key.id]
    again = json.loads((data / "dev-secrets.json").read_text())["RINGBACK_DEMO_API_KEY"]
    assert again == remembered
    # Nobody else's key was touched.
    async with sessions() as session:
        assert await find_principal(session, users) is not None
