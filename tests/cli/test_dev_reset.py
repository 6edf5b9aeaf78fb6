"""`ringback dev reset`: empty development data again, and refuse anywhere else.

Every run here points at this test run's own database and Redis database index, never at
`.data/` (the data directory is the test's own), so nothing else can be emptied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback.models import CallbackOutbox
from services.history.models import HistoryOutbox
from services.intake.models import IntakeOutbox
from shared.outbox import OutboxMixin, row_values
from tests.cli.conftest import RunCli
from tests.conftest import SCHEMAS

Sessions = async_sessionmaker[AsyncSession]
MakeKey = Callable[..., Awaitable[str]]

OTHER_KEY = "someone-else:keep-me"


@pytest.fixture
def env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """This run's own database and Redis index, named explicitly, in development."""
    database = make_url(base_env["RINGBACK_DATABASE_URL"]).database or ""
    assert database.startswith("ringback_test_"), "only ever a test run's own database"
    assert urlparse(base_env["RINGBACK_REDIS_URL"]).path not in ("", "/", "/0")
    return {
        "RINGBACK_ENVIRONMENT": "development",
        "RINGBACK_DATABASE_URL": base_env["RINGBACK_DATABASE_URL"],
        "RINGBACK_REDIS_URL": base_env["RINGBACK_REDIS_URL"],
        "RINGBACK_QUEUE_NAME": base_env["RINGBACK_QUEUE_NAME"],
        "RINGBACK_DATA_DIR": str(tmp_path / "data"),
    }


async def _counts(sessions: Sessions) -> dict[str, int]:
    """Rows in every table of the four schemas, by `schema.table`."""
    async with sessions() as session:
        tables = (
            await session.execute(
                text(
                    "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s) "
                    "AND tablename <> 'alembic_version'"
                ),
                {"s": list(SCHEMAS)},
            )
        ).all()
        counts = {}
        for schema, table in tables:
            found = await session.scalar(text(f'SELECT count(*) FROM "{schema}"."{table}"'))
            counts[f"{schema}.{table}"] = int(found or 0)
        return counts


@pytest.fixture
async def filled(
    clean_db: None, sessions: Sessions, make_key: MakeKey, env: dict[str, str]
) -> AsyncIterator[redis.Redis]:
    """Rows in every service's schema, an API key, and ringback's keys (and another) in Redis."""
    await make_key("admin", name="ops")
    models: list[type[OutboxMixin]] = [IntakeOutbox, CallbackOutbox, HistoryOutbox]
    async with sessions() as session:
        for model in models:
            factory: Callable[..., OutboxMixin] = model
            session.add(
                factory(
                    **row_values(
                        destination="history",
                        path="/v1/events",
                        payload={"phone": "+358401234567"},
                        ordering_key="+358401234567",
                    )
                )
            )
        await session.commit()
    client = redis.Redis.from_url(env["RINGBACK_REDIS_URL"])
    queue = env["RINGBACK_QUEUE_NAME"]
    client.zadd(queue, {"job-1": 1})
    client.set(f"{queue}:health-check", "ok")
    client.set("arq:job:job-1", "x")
    client.set("ringback:ratelimit:ip:abc", 3)
    client.set(OTHER_KEY, "not ringback's")
    yield client
    client.close()


@pytest.mark.parametrize("environment", ["production", "test"])
async def test_it_refuses_outside_development_and_changes_nothing(
    run_cli: RunCli,
    env: dict[str, str],
    filled: redis.Redis,
    sessions: Sessions,
    environment: str,
) -> None:
    before = await _counts(sessions)

    run = await run_cli("dev", "reset", "--yes", env={**env, "RINGBACK_ENVIRONMENT": environment})

    assert run.code == 2
    assert "RINGBACK_ENVIRONMENT=development" in run.err
    assert f"here RINGBACK_ENVIRONMENT is {environment}" in run.err
    assert "Traceback" not in run.err
    assert await _counts(sessions) == before
    assert filled.exists("arq:job:job-1")


async def test_a_configured_database_needs_development_said_out_loud(
    run_cli: RunCli, env: dict[str, str], filled: redis.Redis, sessions: Sessions
) -> None:
    before = await _counts(sessions)
    unset = {k: v for k, v in env.items() if k != "RINGBACK_ENVIRONMENT"}

    run = await run_cli("dev", "reset", "--yes", env=unset)

    assert run.code == 2
    assert "RINGBACK_DATABASE_URL and RINGBACK_REDIS_URL set" in run.err
    assert "wants RINGBACK_ENVIRONMENT=development" in run.err
    assert await _counts(sessions) == before


async def test_it_asks_first_and_a_no_changes_nothing(
    run_cli: RunCli, env: dict[str, str], filled: redis.Redis, sessions: Sessions
) -> None:
    before = await _counts(sessions)

    run = await run_cli("dev", "reset", env=env, answer="no\n")

    assert run.code == 1
    assert "This empties every table" in run.out
    assert "except the API keys" in run.out
    assert "Type yes to go on" in run.out
    assert run.out.rstrip().endswith("nothing was changed")
    assert await _counts(sessions) == before


async def test_in_development_it_empties_every_table_and_ringbacks_redis_keys(
    run_cli: RunCli, env: dict[str, str], filled: redis.Redis, sessions: Sessions
) -> None:
    before = await _counts(sessions)
    assert before["intake.outbox"] == before["callback.outbox"] == before["history.outbox"] == 1

    run = await run_cli("dev", "reset", env=env, answer="yes\n")

    assert run.code == 0, run.err
    assert "API keys were kept" in run.out
    assert "deleted 4 Redis keys" in run.out
    after = await _counts(sessions)
    assert set(after) == set(before)
    assert {table: n for table, n in after.items() if n} == {"auth.api_keys": 1}
    assert filled.keys("arq:*") == []
    assert not filled.exists(env["RINGBACK_QUEUE_NAME"])
    assert filled.get(OTHER_KEY) == b"not ringback's"

    # And the keys too, when asked; the migrations stay applied.
    run = await run_cli("dev", "reset", "--yes", "--keys", env=env)

    assert run.code == 0, run.err
    assert "API keys were kept" not in run.out
    assert not any((await _counts(sessions)).values())
    async with sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM intake.alembic_version")) == 1
