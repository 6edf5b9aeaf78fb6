"""Alembic autogenerate leaves history's monthly partitions alone: no model declares them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.migrate import alembic_config, upgrade
from services.history import partitions
from services.history.models import Base as HistoryBase
from shared.alembic_env import include_object_in
from shared.db import create_engine, create_session_factory
from shared.settings import CommonSettings
from tests.support import infra

METADATA = HistoryBase.metadata


@pytest.fixture(scope="module")
def history_database() -> Iterator[infra.TestDatabase]:
    """A database of its own: the months made here must not show in other tests' plans."""
    with infra.test_database() as db:
        upgrade(db.url, ["history"])
        yield db


@pytest.fixture(scope="module")
async def history_engine(history_database: infra.TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(
        CommonSettings(database_url=history_database.url), application_name="ringback.tests"
    )
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def every_kind_of_partition(history_engine: AsyncEngine) -> list[str]:
    """Besides the months the migration made: a past month and a retired (detached) one."""
    sessions = create_session_factory(history_engine)
    async with sessions() as session, session.begin():
        for month in (datetime(2019, 3, 1, tzinfo=UTC), datetime(2019, 4, 1, tzinfo=UTC)):
            await partitions.create_month(session, month, lock_timeout_ms=2000)
    async with sessions() as session, session.begin():
        april = partitions.partition_of(datetime(2019, 4, 1, tzinfo=UTC))
        retired = await partitions.detach_month(session, april, lock_timeout_ms=2000)
    async with sessions() as session:
        attached = [p.name for p in await partitions.month_partitions(session)]
    return [*attached, partitions.DEFAULT_PARTITION, retired]


def _differences(conn: Connection, include: Any) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"include_schemas": True, "include_object": include, "compare_type": True}
    )
    return list(compare_metadata(context, METADATA))


def _history_only(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    """The filter before partitions: every table of the schema but Alembic's own."""
    if type_ != "table":
        return True
    return obj.schema == "history" and name != "alembic_version"


async def test_autogenerate_proposes_no_drop_of_the_partitions(
    history_engine: AsyncEngine, every_kind_of_partition: list[str]
) -> None:
    hook = include_object_in(METADATA)

    def without_version(obj: Any, name: str | None, type_: str, *rest: Any) -> bool:
        return hook(obj, name, type_, *rest) and name != "alembic_version"

    async with history_engine.connect() as conn:
        before = await conn.run_sync(_differences, _history_only)
        found = await conn.run_sync(_differences, without_version)

    # Without the rule every partition, the retired month too, reads as a table to drop.
    dropped = {diff[1].name for diff in before if diff[0] == "remove_table"}
    assert dropped == set(every_kind_of_partition)
    assert "events_p2019_03" in dropped
    assert "retired_events_p2019_04" in dropped
    assert found == []


def test_alembic_check_of_history_finds_nothing_to_generate(
    history_database: infra.TestDatabase, every_kind_of_partition: list[str]
) -> None:
    # Through history's own env.py, as `alembic check` (or a `revision --autogenerate`) runs it.
    command.check(alembic_config("history", history_database.url))
