"""`ringback dev reset`: back to empty development data, refused anywhere but development.

It empties every table of ringback's four schemas (the migrations stay applied, so a running
`make run` carries on) and deletes ringback's keys from the development Redis database. API
keys are kept unless asked for, so the keys a developer pasted into their shell, the console
and `make demo` keep working.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from sqlalchemy.engine import make_url

from services.cli.admin import CliFailure
from services.cli.devstate import data_dir, embedded_postgres, embedded_redis, ensure_database_url
from services.cli.migrate import COMPONENTS
from shared.ratelimit import PREFIX as RATE_LIMIT_PREFIX
from shared.settings import CommonSettings

# Each component owns the schema of its name (shared/alembic_env.py).
SCHEMAS = tuple(COMPONENTS)
API_KEYS = ("auth", "api_keys")
# Variables that point at infrastructure someone configured, rather than the embedded servers
# `make run` keeps under `.data/`: with any of them set, only an explicit
# RINGBACK_ENVIRONMENT=development says the data is a developer's to throw away.
CONFIGURED = (
    "RINGBACK_DATABASE_URL",
    "RINGBACK_INTAKE_DATABASE_URL",
    "RINGBACK_CALLBACK_DATABASE_URL",
    "RINGBACK_HISTORY_DATABASE_URL",
    "RINGBACK_REDIS_URL",
)
# A running process may hold a table for a moment; longer than this, it is better to say so.
LOCK_TIMEOUT = "10s"


@dataclass(frozen=True)
class Emptied:
    tables: int
    redis_keys: int | None  # None: no development Redis to clean


def refusal(env: Mapping[str, str]) -> str | None:
    """Why `dev reset` may not run with this environment; None when it may."""
    environment = env.get("RINGBACK_ENVIRONMENT", "")
    if environment == "development":
        return None
    if environment:
        return (
            "error: ringback dev reset empties every table, so it runs only in development "
            f"(RINGBACK_ENVIRONMENT=development); here RINGBACK_ENVIRONMENT is {environment}"
        )
    configured = [name for name in CONFIGURED if env.get(name)]
    if configured:
        return (
            f"error: {' and '.join(configured)} set, RINGBACK_ENVIRONMENT not: ringback dev "
            "reset empties every table, so it wants RINGBACK_ENVIRONMENT=development to say "
            "that this is development data"
        )
    return None  # only the embedded servers under .data/: development by definition


def redis_patterns(queue_name: str) -> list[str]:
    """ringback's keys in Redis: arq's jobs and results, callback's queue, the abuse counters."""
    queue = re.sub(r"([*?\[\]\\])", r"\\\1", queue_name)
    return ["arq:*", queue, f"{queue}:*", f"{RATE_LIMIT_PREFIX}*"]


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def run_reset(*, yes: bool, keys: bool) -> int:
    why = refusal(os.environ)
    if why:
        raise CliFailure(why, 2)
    if not os.environ.get("RINGBACK_DATABASE_URL") and not embedded_postgres().directory.exists():
        # Starting the embedded server would create a database only to find it empty.
        print(f"no development data under {data_dir()}: nothing to reset")
        return 0
    url, server = ensure_database_url()
    try:
        settings = CommonSettings(database_url=url)
        databases = sorted(set(settings.all_database_urls().values()))
        redis_url = os.environ.get("RINGBACK_REDIS_URL")
        redis_server = None
        if not redis_url and embedded_redis().directory.exists():
            redis_server = embedded_redis()
            redis_url = redis_server.start()
        try:
            if not yes and not _confirmed(databases, redis_url, settings.queue_name, keys=keys):
                print("nothing was changed")
                return 1
            emptied = _empty(databases, redis_url, settings.queue_name, keys=keys)
        finally:
            if redis_server is not None:
                redis_server.stop()
    finally:
        if server is not None:
            server.stop()
    print(f"emptied {emptied.tables} tables in {len(databases)} database(s)")
    if not keys:
        print("API keys were kept (`ringback dev reset --keys` empties them too)")
    if emptied.redis_keys is None:
        print("no development Redis: nothing to clean there")
    else:
        print(f"deleted {emptied.redis_keys} Redis keys")
    return 0


def _confirmed(databases: list[str], redis_url: str | None, queue: str, *, keys: bool) -> bool:
    kept = "" if keys else ", except the API keys (`--keys`: those too)"
    print(f"This empties every table of the schemas {', '.join(SCHEMAS)}{kept} in:")
    for url in databases:
        print(f"  {_shown(url)}")
    if redis_url:
        print(f"and deletes {' '.join(redis_patterns(queue))} in Redis {_shown(redis_url)}")
    try:
        answer = input("Type yes to go on: ")
    except EOFError:
        print()
        return False
    return answer.strip().lower() == "yes"


def _empty(databases: list[str], redis_url: str | None, queue: str, *, keys: bool) -> Emptied:
    tables = sum(asyncio.run(_truncate(url, keys=keys)) for url in databases)
    return Emptied(tables, _delete_redis_keys(redis_url, queue) if redis_url else None)


async def _truncate(url: str, *, keys: bool) -> int:
    """TRUNCATE every table of the schemas in one statement; the number of tables."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from shared.db import create_engine

    engine = create_engine(CommonSettings(database_url=url), application_name="ringback.cli")
    try:
        async with engine.begin() as conn:
            rows = await conn.execute(
                text(
                    "SELECT schemaname, tablename FROM pg_tables "
                    "WHERE schemaname = ANY(:schemas) AND tablename <> 'alembic_version' "
                    "ORDER BY 1, 2"
                ),
                {"schemas": list(SCHEMAS)},
            )
            tables = [(schema, table) for schema, table in rows]
            if not keys:
                tables.remove(API_KEYS)
            if not tables:
                return 0
            await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            names = ", ".join(f'"{schema}"."{table}"' for schema, table in tables)
            # No CASCADE: should a kept table (the API keys) ever be referenced from another,
            # this fails instead of emptying it behind the developer's back.
            try:
                await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise CliFailure(
                        f"error: a running process held a table for {LOCK_TIMEOUT}; "
                        "stop `make run` and try again (nothing was changed)"
                    ) from None
                raise
            return len(tables)
    finally:
        await engine.dispose()


def _delete_redis_keys(url: str, queue: str) -> int:
    from shared.redis_url import sync_client

    client = sync_client(url)
    deleted = 0
    try:
        for pattern in redis_patterns(queue):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) == 500:
                    deleted += cast(int, client.delete(*batch))
                    batch = []
            if batch:
                deleted += cast(int, client.delete(*batch))
    finally:
        client.close()
    return deleted
