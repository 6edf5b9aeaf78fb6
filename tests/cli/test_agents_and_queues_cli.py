"""`ringback agent add|list|remove` and `ringback queue list` against callback run for real."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import RunCli
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

MakeKey = Callable[..., Awaitable[str]]


@pytest.fixture
def callback(base_env: dict[str, str], clean_db: None, tmp_path: Path) -> Iterator[Stack]:
    extra = {"RINGBACK_SINK_DIR": str(tmp_path / "sink")}
    with running_stack(base_env, tmp_path / "logs", extra, ("callback",)) as running:
        yield running


@pytest.fixture
async def operator(callback: Stack, make_key: MakeKey) -> dict[str, str]:
    """What an operator's shell has: where callback is and an admin key."""
    return {
        "RINGBACK_CALLBACK_URL": callback.url("callback"),
        "RINGBACK_ADMIN_API_KEY": await make_key("admin"),
    }


async def api(operator: dict[str, str], method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {operator['RINGBACK_ADMIN_API_KEY']}"}
    async with httpx.AsyncClient(base_url=operator["RINGBACK_CALLBACK_URL"]) as client:
        return await client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]


def table(out: str) -> list[list[str]]:
    """The printed table's cells: columns are two or more spaces apart."""
    return [re.split(r" {2,}", line.strip()) for line in out.splitlines()]


async def test_an_added_agent_is_listed_under_a_header(
    operator: dict[str, str], run_cli: RunCli
) -> None:
    created = await api(operator, "PUT", "/v1/queues/billing", json={"name": "Laskutus"})
    assert created.status_code == 201, created.text

    run = await run_cli(
        "agent", "add", "anna", "--name", "Anna Virtanen", "--queue", "billing",
        "--queue", "default", "--language", "fi", "--language", "sv",
        "--phone", "+358401234567", env=operator,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert run.out == (
        "added agent anna (Anna Virtanen): queues billing,default, languages fi,sv, "
        "presence offline\n"
    )
    stored = (await api(operator, "GET", "/v1/agents/anna")).json()
    assert stored["phone"] == "+358401234567"

    listed = await run_cli("agent", "list", env=operator)
    assert listed.code == 0, listed.err
    assert table(listed.out) == [
        ["ID", "NAME", "QUEUES", "LANGUAGES", "PRESENCE"],
        ["anna", "Anna Virtanen", "billing,default", "fi,sv", "offline"],
    ]

    # Added again: replaced as a whole (no phone now), the presence kept.
    await api(operator, "PUT", "/v1/agents/anna/presence", json={"status": "available"})
    again = await run_cli(
        "agent", "add", "anna", "--name", "Anna V.", "--queue", "billing", env=operator
    )
    assert again.code == 0, again.err
    assert again.out == (
        "replaced agent anna (Anna V.): queues billing, languages -, presence available\n"
    )
    assert (await api(operator, "GET", "/v1/agents/anna")).json()["phone"] is None


async def test_an_unknown_queue_is_refused_with_the_apis_message(
    operator: dict[str, str], run_cli: RunCli
) -> None:
    run = await run_cli(
        "agent", "add", "anna", "--name", "Anna", "--queue", "nope", env=operator
    )  # fmt: skip

    assert run.code == 1
    assert run.out == ""
    assert run.err.splitlines() == [
        "error: 422 Unprocessable Content: The request did not pass validation.",
        "  queues: no such queue: nope",
    ]
    assert (await api(operator, "GET", "/v1/agents/anna")).status_code == 404


async def test_a_removed_agent_is_gone(operator: dict[str, str], run_cli: RunCli) -> None:
    await api(operator, "PUT", "/v1/agents/bjorn", json={"name": "Björn", "queues": ["default"]})

    run = await run_cli("agent", "remove", "bjorn", env=operator)

    assert (run.code, run.out) == (0, "removed agent bjorn\n"), run.err
    assert (await api(operator, "GET", "/v1/agents/bjorn")).status_code == 404
    listed = await run_cli("agent", "list", env=operator)
    assert listed.out == "no agents are known to callback (`ringback agent add` adds one)\n"
    twice = await run_cli("agent", "remove", "bjorn", env=operator)
    assert twice.code == 1
    assert "No agent 'bjorn' is known to /v1/agents." in twice.err


async def test_queue_list_shows_default_and_the_queues_made_through_the_api(
    operator: dict[str, str], run_cli: RunCli
) -> None:
    body = {
        "name": "Kundtjänst",
        "numbers": ["+46812345678", "+46812345679"],
        "languages": ["sv", "en"],
        "timezone": "Europe/Stockholm",
    }
    assert (await api(operator, "PUT", "/v1/queues/support", json=body)).status_code == 201

    run = await run_cli("queue", "list", env=operator)

    assert run.code == 0, run.err
    rows = table(run.out)
    assert rows[0] == ["KEY", "NAME", "LANGUAGES", "NUMBERS", "TIMEZONE"]
    assert sorted(rows[1:]) == [
        # The default queue keeps the site's zone (RINGBACK_SITE_TIMEZONE's default here).
        ["default", "Default", "-", "-", "Europe/Helsinki"],
        ["support", "Kundtjänst", "sv,en", "+46812345678,+46812345679", "Europe/Stockholm"],
    ]


async def test_without_an_admin_key_the_api_refuses(
    callback: Stack, make_key: MakeKey, run_cli: RunCli
) -> None:
    reader = await make_key("callbacks:read")
    env = {"RINGBACK_CALLBACK_URL": callback.url("callback"), "RINGBACK_ADMIN_API_KEY": reader}

    run = await run_cli("agent", "add", "anna", "--name", "Anna", "--queue", "default", env=env)

    assert run.code == 1
    assert run.err.startswith("error: 403 ")
