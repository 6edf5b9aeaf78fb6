"""A backup is one that restores: dump the database, restore it into a new one, find the callbacks.

The steps are those of docs/operations.md ("Backups and restore"): `pg_dump --format=custom` of
the whole database (the default deployment, schemas `auth`, `intake`, `callback`, `history`) or
of one service's schemas (a service with a database of its own), `pg_restore` into a new empty
database, `ringback migrate`, then the service started on it answers with the same callbacks,
and the API keys made before the dump still open them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.callback.app import create_app
from services.callback.settings import CallbackSettings
from services.cli.migrate import upgrade
from shared.db import asyncpg_dsn
from tests.callback.helpers import callback_body
from tests.conftest import serve_asgi
from tests.support import infra


def _pgserver_bin() -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning on import
            import pgserver
    except ImportError:
        return None
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


async def _output(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, f"{Path(command[0]).name} failed: {err.decode()[-2000:]}"
    return out.decode()


async def _major(tool: str) -> int:
    found = re.search(r"(\d+)(?:\.\d+)*", await _output(tool, "--version"))
    return int(found.group(1)) if found else 0


async def _server_major(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return int(await conn.fetchval("SHOW server_version_num")) // 10000
    finally:
        await conn.close()


@pytest.fixture
async def pg_tools(database: infra.TestDatabase) -> tuple[str, str]:
    """`pg_dump` and `pg_restore` of a version that can dump this server (same or newer)."""
    server = await _server_major(database.url)
    candidates = [Path(p).parent for p in [shutil.which("pg_dump")] if p]
    if (bundled := _pgserver_bin()) is not None:
        candidates.append(bundled)
    for directory in candidates:
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if dump.exists() and restore.exists() and await _major(str(dump)) >= server:
            return str(dump), str(restore)
    pytest.skip(f"no pg_dump/pg_restore for PostgreSQL {server} is installed")


@pytest.fixture
async def restored_database(database: infra.TestDatabase) -> AsyncIterator[str]:
    """A new, empty database on the same server (dropped afterwards): the restore's target."""
    name = f"{database.name}_restored_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(asyncpg_dsn(database.admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(database.url).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _callback_settings(
    settings_kwargs: dict[str, Any], tmp_path: Path, **values: Any
) -> CallbackSettings:
    return CallbackSettings(**{**settings_kwargs, **values}, sink_dir=tmp_path / "sink")


@pytest.mark.parametrize(
    ("schemas", "components"),
    [
        pytest.param((), None, id="whole-database"),
        # A service with a database of its own: its schema and the API keys beside it.
        pytest.param(("auth", "callback"), ["auth", "callback"], id="callback-schemas"),
    ],
)
async def test_a_dump_restores_into_a_new_database_with_the_callbacks(
    schemas: tuple[str, ...],
    components: list[str] | None,
    pg_tools: tuple[str, str],
    restored_database: str,
    database: infra.TestDatabase,
    settings_kwargs: dict[str, Any],
    internal_key: str,
    make_key: Callable[..., Awaitable[str]],
    clean_db: None,
    tmp_path: Path,
) -> None:
    pg_dump, pg_restore = pg_tools
    internal = {"authorization": f"Bearer {internal_key}"}
    reader = {"authorization": f"Bearer {await make_key('callbacks:read', name='backup-test')}"}

    before: dict[str, Any] = {}
    async for client in serve_asgi(create_app(_callback_settings(settings_kwargs, tmp_path))):
        for phone, name in (("040 123 4567", "Maija"), ("050 765 4321", "Matti")):
            body = callback_body(phone=phone, name=name)
            created = await client.post("/v1/callbacks", json=body, headers=internal)
            assert created.status_code == 201, created.text
            callback_id = created.json()["id"]
            before[callback_id] = (
                await client.get(f"/v1/callbacks/{callback_id}", headers=reader)
            ).json()

    dump = tmp_path / "ringback.dump"
    await _output(
        pg_dump,
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        *(f"--schema={schema}" for schema in schemas),
        f"--file={dump}",
        f"--dbname={asyncpg_dsn(database.url)}",
    )
    await _output(
        pg_restore,
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        f"--dbname={asyncpg_dsn(restored_database)}",
        str(dump),
    )
    # `ringback migrate` after a restore: a no-op for a dump of this version, and what brings
    # an older dump up to the release that now runs on it.
    await asyncio.to_thread(upgrade, restored_database, components)

    restored = _callback_settings(settings_kwargs, tmp_path, database_url=restored_database)
    async for client in serve_asgi(create_app(restored)):
        listed = await client.get("/v1/callbacks", headers=reader)
        assert listed.status_code == 200, listed.text
        assert {item["id"] for item in listed.json()["items"]} == set(before)
        for callback_id, seen in before.items():
            found = await client.get(f"/v1/callbacks/{callback_id}", headers=reader)
            assert found.status_code == 200, found.text
            assert found.json() == seen
