"""`ringback api-key`: keys bound to an agent (DESIGN §9), and the list an operator reads."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.apikeys import ApiKey, find_principal
from tests.cli.conftest import RunCli

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def env(base_env: dict[str, str]) -> dict[str, str]:
    return {"RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"]}


def _unique(prefix: str) -> str:
    # The session's database is shared with other tests: find our rows by name.
    return f"{prefix}-{secrets.token_hex(4)}"


async def _rows_named(sessions: Sessions, name: str) -> list[ApiKey]:
    async with sessions() as session:
        return list((await session.scalars(select(ApiKey).where(ApiKey.name == name))).all())


async def test_create_with_agent_stores_a_key_bound_to_that_agent(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions
) -> None:
    name = _unique("anna-desk")

    run = await run_cli(
        "api-key", "create", "--agent", "anna", "--scope", "callbacks:write", "--name", name,
        env=env,
    )  # fmt: skip

    assert run.code == 0, run.err
    *said, key = run.out.splitlines()
    assert "acts only as agent anna" in " ".join(said)
    [row] = await _rows_named(sessions, name)
    assert row.agent_id == "anna"
    assert row.scopes == ["callbacks:write"]
    async with sessions() as session:
        principal = await find_principal(session, key)
    assert principal is not None
    assert principal.agent_id == "anna"


async def test_create_without_agent_stores_an_unbound_key(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions
) -> None:
    name = _unique("shared-desk")

    run = await run_cli("api-key", "create", "--scope", "callbacks:write", "--name", name, env=env)

    assert run.code == 0, run.err
    assert "agent" not in run.out
    [row] = await _rows_named(sessions, name)
    assert row.agent_id is None


@pytest.mark.parametrize(
    ("scopes", "refused"),
    [
        (["admin"], "admin"),
        (["internal"], "internal"),
        (["callbacks:read", "admin"], "admin"),
        (["callbacks:write", "internal"], "internal"),
    ],
)
async def test_create_refuses_to_bind_an_admin_or_internal_key(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, scopes: list[str], refused: str
) -> None:
    name = _unique("refused")
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]

    run = await run_cli(
        "api-key", "create", "--agent", "anna", *scope_args, "--name", name, env=env
    )

    assert run.code == 2
    assert run.out == ""
    assert run.err.startswith("error: --agent:")
    assert f"cannot have the scope {refused}" in run.err
    assert await _rows_named(sessions, name) == []


@pytest.mark.parametrize("agent_id", ["anna bob", "anna/bob", "a" * 65, ""])
async def test_create_refuses_a_malformed_agent_id(
    run_cli: RunCli, env: dict[str, str], sessions: Sessions, agent_id: str
) -> None:
    name = _unique("malformed")

    run = await run_cli(
        "api-key", "create", f"--agent={agent_id}", "--scope", "callbacks:write", "--name", name,
        env=env,
    )  # fmt: skip

    assert run.code == 2
    assert run.out == ""
    assert "not a valid agent id" in run.err
    # The rule is spelled out, so the operator can fix the id without reading code.
    assert "letters, digits and . _ @ : -" in run.err
    assert await _rows_named(sessions, name) == []


async def test_list_has_a_header_and_shows_each_keys_agent(
    run_cli: RunCli, env: dict[str, str]
) -> None:
    bound, unbound = _unique("bound"), _unique("unbound")
    for args in (
        ("--agent", "anna.k@example.com", "--scope", "callbacks:read", "--name", bound),
        ("--scope", "callbacks:read", "--name", unbound),
    ):
        created = await run_cli("api-key", "create", *args, env=env)
        assert created.code == 0, created.err

    listed = await run_cli("api-key", "list", env=env)

    assert listed.code == 0, listed.err
    header, *lines = listed.out.splitlines()
    assert header.split() == ["ID", "STATUS", "NAME", "AGENT", "SCOPES"]
    by_name = {line.split()[2]: line.split() for line in lines}
    assert by_name[bound][3] == "anna.k@example.com"
    assert by_name[unbound][3] == "-"
    assert by_name[bound][1] == "active"
    assert by_name[bound][4:] == ["callbacks:read"]
    # The columns line up under the header, whatever the lengths of the values.
    agent_column = header.index("AGENT")
    bound_line = next(line for line in lines if bound in line)
    assert bound_line[agent_column:].startswith("anna.k@example.com")
