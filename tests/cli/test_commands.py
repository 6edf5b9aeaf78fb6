"""The command line as a whole: its help, and keys made by `ringback api-key create`."""

from __future__ import annotations

import argparse

import httpx

from services.cli.main import build_parser
from tests.cli.conftest import RunCli
from tests.support.live import LiveServer


def _commands(parser: argparse.ArgumentParser) -> dict[str, str]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help or "" for choice in sub._choices_actions}


async def test_help_lists_every_command_with_a_description(run_cli: RunCli) -> None:
    run = await run_cli("--help")

    assert run.code == 0
    commands = _commands(build_parser())
    assert {"run", "serve", "api-key", "inbound", "capacity", "demo"} <= set(commands)
    for name, description in commands.items():
        assert description, f"{name} has no description"
        assert f"    {name}" in run.out
        # argparse wraps long descriptions; the first words are on the command's line or next.
        assert " ".join(description.split()[:3]) in " ".join(run.out.split())
    assert "examples:" in run.out


async def test_every_command_explains_itself(run_cli: RunCli) -> None:
    for args in (
        ("inbound", "list"),
        ("inbound", "replay"),
        ("capacity", "import"),
        ("capacity", "show"),
        ("api-key", "create"),
    ):
        run = await run_cli(*args, "--help")
        assert run.code == 0, args
        assert run.out.startswith(f"usage: ringback {' '.join(args)}")
    csv_help = (await run_cli("capacity", "import", "--help")).out
    assert "day,from,to,agents" in csv_help
    assert "2026-12-25,closed,," in csv_help


async def test_a_created_admin_key_is_the_last_line_and_works(
    intake_server: LiveServer, base_env: dict[str, str], run_cli: RunCli
) -> None:
    env = {"RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"]}

    run = await run_cli("api-key", "create", "--scope", "admin", "--name", "ops", env=env)

    assert run.code == 0, run.err
    *_, key = run.out.splitlines()
    assert key.startswith("rb_")
    assert " " not in key
    async with httpx.AsyncClient(base_url=intake_server.url) as client:
        answer = await client.get("/v1/inbound", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    listed = await run_cli(
        "inbound", "list", env={"RINGBACK_INTAKE_URL": intake_server.url,
                                "RINGBACK_ADMIN_API_KEY": key},
    )  # fmt: skip
    assert listed.code == 0, listed.err
    keys = await run_cli("api-key", "list", env=env)
    assert any(" ops " in line and "admin" in line for line in keys.out.splitlines())
    assert key not in keys.out
