"""Keys bound to an agent (DESIGN §9): who a key acts as, from the key row to the problem answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.cli.migrate import alembic_config, upgrade
from shared.agent_ids import AGENT_ID_PATTERN, is_agent_id
from shared.apikeys import AuthBase, Principal, create_key, digest, generate_key, revoke_key
from shared.auth import KeyVerifier, acting_agent, require_scope
from shared.db import asyncpg_dsn, create_engine, create_session_factory
from shared.error_handlers import install_error_handlers
from shared.errors import Forbidden, Unprocessable
from shared.ids import new_id
from shared.settings import CommonSettings
from tests.support import infra

Sessions = async_sessionmaker[AsyncSession]


async def _bound_key(sessions: Sessions, agent_id: str, *scopes: str) -> tuple[str, str]:
    """A key bound to `agent_id`, stored for real: (key id, plaintext key)."""
    async with sessions() as session:
        row, key = await create_key(
            session, name=f"{agent_id}-desk", scopes=list(scopes), agent_id=agent_id
        )
        await session.commit()
    return row.id, key


def _verifier(sessions: Sessions, *, internal_key: str | None = None) -> KeyVerifier:
    return KeyVerifier(sessions, internal_key=internal_key, cache_seconds=60)


# --- the key and its principal ---------------------------------------------------------------


async def test_a_bound_keys_principal_carries_its_agent_also_from_the_cache(
    sessions: Sessions,
) -> None:
    key_id, key = await _bound_key(sessions, "anna", "callbacks:read", "callbacks:write")
    verifier = _verifier(sessions)

    first = await verifier.verify(key)
    async with sessions() as session:
        assert await revoke_key(session, key_id=key_id)
        await session.commit()
    cached = await verifier.verify(key)

    assert first is not None
    assert first.agent_id == "anna"
    assert first.scopes == {"callbacks:read", "callbacks:write"}
    # The row is revoked, so only the cache can still answer, and it answers with the agent.
    assert cached == first
    assert await _verifier(sessions).verify(key) is None


async def test_an_unbound_key_and_the_internal_key_belong_to_no_agent(
    sessions: Sessions, make_key: Callable[..., Awaitable[str]], internal_key: str
) -> None:
    verifier = _verifier(sessions, internal_key=internal_key)

    desk = await verifier.verify(await make_key("callbacks:write"))
    internal = await verifier.verify(internal_key)

    assert desk is not None
    assert desk.agent_id is None
    assert internal is not None
    assert internal.agent_id is None


@pytest.mark.parametrize(
    ("scopes", "refused"),
    [(["admin"], "admin"), (["callbacks:write", "internal"], "internal")],
)
async def test_admin_and_internal_keys_cannot_be_bound(
    sessions: Sessions, scopes: list[str], refused: str
) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match=f"cannot have the scope {refused}"):
            await create_key(session, name="refused", scopes=scopes, agent_id="anna")


@pytest.mark.parametrize("agent_id", ["", "anna bob", "anna/../bob", "a" * 65])
async def test_a_key_is_not_bound_to_a_malformed_agent_id(
    sessions: Sessions, agent_id: str
) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="not a valid agent id"):
            await create_key(session, name="refused", scopes=["callbacks:write"], agent_id=agent_id)


# --- the agent id rule -------------------------------------------------------------------------

# v1's claims took the ids on the second line; an agent known by one keeps working.
_GOOD_IDS = ["anna", "a", "7", "anna.k", "anna@example.com", "A-1_b", "x" * 64]
_GOOD_IDS += ["-anna", ".anna", "_anna", "sip:anna"]
_BAD_IDS = ["", "anna k", "anna/bob", "änna", "x" * 65, "anna\n"]


class _Body(BaseModel):
    agent_id: str = Field(pattern=AGENT_ID_PATTERN)


@pytest.mark.parametrize("agent_id", _GOOD_IDS + _BAD_IDS)
def test_the_pattern_means_the_same_to_pydantic_and_to_the_key_store(agent_id: str) -> None:
    """callback validates with `pattern=AGENT_ID_PATTERN`, the key store with `is_agent_id`."""
    try:
        _Body(agent_id=agent_id)
        pydantic_says = True
    except ValidationError:
        pydantic_says = False

    assert is_agent_id(agent_id) is (agent_id in _GOOD_IDS)
    assert pydantic_says is is_agent_id(agent_id)


# --- acting_agent ------------------------------------------------------------------------------


@pytest.fixture
async def anna(sessions: Sessions) -> Principal:
    """The principal of a key bound to anna, as a service's verifier resolves it."""
    _, key = await _bound_key(sessions, "anna", "callbacks:read", "callbacks:write")
    principal = await _verifier(sessions).verify(key)
    assert principal is not None
    return principal


async def test_a_bound_key_acts_as_its_agent_named_or_not(anna: Principal) -> None:
    assert acting_agent(anna, None) == "anna"
    assert acting_agent(anna, "anna") == "anna"


async def test_a_bound_key_cannot_act_as_another_agent(anna: Principal) -> None:
    with pytest.raises(Forbidden) as refused:
        acting_agent(anna, "bob")

    assert refused.value.status == 403
    assert refused.value.detail == "This key belongs to agent anna; it cannot act as bob."


async def test_a_bound_key_does_not_match_agents_by_case(anna: Principal) -> None:
    # Agent ids are compared exactly everywhere else (claims, leases), so here too.
    with pytest.raises(Forbidden):
        acting_agent(anna, "Anna")


async def test_unbound_keys_act_for_any_agent(
    sessions: Sessions, make_key: Callable[..., Awaitable[str]], internal_key: str
) -> None:
    verifier = _verifier(sessions, internal_key=internal_key)
    for key in (await make_key("callbacks:write"), await make_key("admin"), internal_key):
        principal = await verifier.verify(key)
        assert principal is not None
        assert acting_agent(principal, "anna") == "anna"
        assert acting_agent(principal, "bob") == "bob"


async def test_an_unbound_key_must_name_the_agent(
    sessions: Sessions, make_key: Callable[..., Awaitable[str]]
) -> None:
    principal = await _verifier(sessions).verify(await make_key("callbacks:write"))
    assert principal is not None

    with pytest.raises(Unprocessable) as missing:
        acting_agent(principal, None)
    with pytest.raises(Unprocessable) as missing_in_path:
        acting_agent(principal, None, loc=("path", "agent_id"))

    assert missing.value.status == 422
    [error] = missing.value.extra["errors"]
    assert error["loc"] == ["body", "agent_id"]
    assert error["msg"].startswith("Field required")
    assert missing_in_path.value.extra["errors"][0]["loc"] == ["path", "agent_id"]


# --- over HTTP, as callback's endpoints will use it --------------------------------------------


class _Action(BaseModel):
    agent_id: str | None = Field(default=None, pattern=AGENT_ID_PATTERN)


# Module level: the endpoint's annotations are strings, resolved in this module's globals.
_may_write = require_scope("callbacks:write", "internal")


@pytest.fixture
async def client(sessions: Sessions, internal_key: str) -> AsyncIterator[AsyncClient]:
    """An app with one agent action, built from the same parts a service is."""
    app = FastAPI()
    install_error_handlers(app)
    app.state.key_verifier = _verifier(sessions, internal_key=internal_key)

    @app.post("/act")
    async def act(
        body: _Action, principal: Annotated[Principal, Depends(_may_write)]
    ) -> dict[str, str]:
        return {"agent_id": acting_agent(principal, body.agent_id)}

    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def _act(client: AsyncClient, key: str, body: dict[str, Any]) -> Any:
    return await client.post("/act", json=body, headers={"authorization": f"Bearer {key}"})


async def test_over_http_a_bound_key_is_its_agent_and_another_name_is_a_403_problem(
    client: AsyncClient, sessions: Sessions
) -> None:
    _, key = await _bound_key(sessions, "anna", "callbacks:write")

    unnamed = await _act(client, key, {})
    named = await _act(client, key, {"agent_id": "anna"})
    other = await _act(client, key, {"agent_id": "bob"})

    assert unnamed.status_code == 200, unnamed.text
    assert unnamed.json() == {"agent_id": "anna"}
    assert named.json() == {"agent_id": "anna"}
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["title"] == "Forbidden"
    assert other.json()["detail"] == "This key belongs to agent anna; it cannot act as bob."


async def test_over_http_an_unbound_key_without_an_agent_is_a_422_like_any_missing_field(
    client: AsyncClient, make_key: Callable[..., Awaitable[str]], internal_key: str
) -> None:
    desk = await make_key("callbacks:write")

    missing = await _act(client, desk, {})
    malformed = await _act(client, desk, {"agent_id": "anna bob"})
    relay = await _act(client, internal_key, {"agent_id": "bob"})

    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    # The same members FastAPI's own validation answer has (`malformed`), so clients parse one.
    assert missing.json().keys() == malformed.json().keys()
    assert missing.json()["detail"] == malformed.json()["detail"]
    assert [e["loc"] for e in missing.json()["errors"]] == [["body", "agent_id"]]
    assert [e["loc"] for e in malformed.json()["errors"]] == [["body", "agent_id"]]
    assert relay.json() == {"agent_id": "bob"}


# --- the upgrade -------------------------------------------------------------------------------


@pytest.fixture
def before_the_upgrade() -> Iterator[tuple[infra.TestDatabase, str]]:
    """A database whose key store is at revision 0001, holding one key made then."""
    # Its own database: the session's is already at the newest revision.
    with infra.test_database() as db:
        command.upgrade(alembic_config("auth", db.url), "0001")
        key, lookup = generate_key()

        async def insert() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(db.url))
            try:
                await conn.execute(
                    "INSERT INTO auth.api_keys (id, name, lookup, digest, scopes, created_at) "
                    "VALUES ($1, 'old-desk', $2, $3, $4, now())",
                    new_id(), lookup, digest(key), ["callbacks:write"],
                )  # fmt: skip
            finally:
                await conn.close()

        asyncio.run(insert())
        yield db, key


async def test_a_key_made_before_the_upgrade_still_works_and_is_unbound(
    before_the_upgrade: tuple[infra.TestDatabase, str],
) -> None:
    db, key = before_the_upgrade

    # As `ringback migrate` does; Alembic runs its own event loop, so off this one.
    await asyncio.to_thread(upgrade, db.url, ["auth"])

    engine = create_engine(CommonSettings(database_url=db.url), application_name="ringback.tests")
    try:
        principal = await _verifier(create_session_factory(engine)).verify(key)
    finally:
        await engine.dispose()
    assert principal is not None
    assert principal.name == "old-desk"
    assert principal.agent_id is None
    assert acting_agent(principal, "anna") == "anna"


async def test_the_migrated_key_store_is_what_the_model_declares(
    database: object, engine: AsyncEngine
) -> None:
    def differences(conn: Connection) -> list[Any]:
        def in_auth(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or (table.schema == "auth" and table.name != "alembic_version")

        context = MigrationContext.configure(
            conn, opts={"include_schemas": True, "include_object": in_auth, "compare_type": True}
        )
        return list(compare_metadata(context, AuthBase.metadata))

    async with engine.connect() as conn:
        found = await conn.run_sync(differences)
    assert found == [], f"the auth migrations differ from shared.apikeys: {found}"
