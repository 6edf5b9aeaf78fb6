"""The body of every component's Alembic `env.py`: async engine, one schema, one lock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared import partition_names
from shared.db import async_url

# Two `ringback migrate` runs at once (say, two deploy jobs) must not interleave. A session
# lock, held across transactions: `ringback migrate` connects to PostgreSQL directly
# (`RINGBACK_DATABASE_DIRECT_URL`), never through a pooler in transaction mode.
_MIGRATION_LOCK = 0x52494E47  # "RING"


def include_object_in(metadata: MetaData) -> Callable[..., bool]:
    """Alembic's `include_object` for one component: the tables of its schema, less the
    partitions its partitioned tables get at run time (autogenerate would drop them)."""
    schema = metadata.schema
    partitioned = [
        table.name
        for table in metadata.tables.values()
        if table.dialect_options["postgresql"]["partition_by"]
    ]

    def include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
        if type_ != "table":
            return True
        if name is not None and any(partition_names.is_partition(p, name) for p in partitioned):
            return False
        return getattr(obj, "schema", None) == schema

    return include_object


def run_env(metadata: MetaData) -> None:
    """Run this component's migrations inside its own schema."""
    schema = metadata.schema
    assert schema, "every component owns exactly one schema"
    config = context.config
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to Alembic")

    def do_run(connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        try:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            context.configure(
                connection=connection,
                target_metadata=metadata,
                version_table_schema=schema,
                include_schemas=True,
                include_object=include_object_in(metadata),
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        except BaseException:
            # A failed step leaves the transaction aborted: roll it back so the unlock below
            # can run and the step's own error is the one reported, not the unlock's.
            connection.rollback()
            raise
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            connection.commit()

    async def main() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(main())
