"""`ringback demo` on a running stack: the confirmation reaches the customer in their language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import RunCli
from tests.support.signing import new_secret
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SECRET = new_secret()


@pytest.fixture
def stack(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    # The development sink, as in `make run`: the demo shows what was "sent" from it.
    extra = {"RINGBACK_WEBHOOK_SECRETS": SECRET, "RINGBACK_SINK_DIR": str(tmp_path / "sink")}
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


def test_the_demo_speaks_the_sites_default_unless_told() -> None:
    from services.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["demo"]).language is None
    assert parser.parse_args(["demo", "--language", "et"]).language == "et"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--language", "de"])
