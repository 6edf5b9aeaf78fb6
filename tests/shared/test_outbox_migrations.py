"""Every service's migrations build the same outbox, the one `OutboxMixin` declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.callback.models import Base as CallbackBase
from services.history.models import Base as HistoryBase
from services.intake.models import Base as IntakeBase
from shared.alembic_env import include_object_in

SCHEMAS: dict[str, MetaData] = {
    "intake": IntakeBase.metadata,
    "callback": CallbackBase.metadata,
    "history": HistoryBase.metadata,
}

_COLUMNS = """
SELECT column_name, data_type, character_maximum_length, is_nullable, is_identity,
    identity_generation, column_default
FROM information_schema.columns
WHERE table_schema = :schema AND table_name = 'outbox'
ORDER BY ordinal_position
"""
_INDEXES = """
SELECT indexname, replace(indexdef, :schema || '.', '') FROM pg_indexes
WHERE schemaname = :schema AND tablename = 'outbox'
ORDER BY indexname
"""


async def _outbox(engine: AsyncEngine, schema: str) -> dict[str, list[Any]]:
    async with engine.connect() as conn:
        columns = (await conn.execute(text(_COLUMNS), {"schema": schema})).all()
        indexes = (await conn.execute(text(_INDEXES), {"schema": schema})).all()
    return {"columns": [tuple(c) for c in columns], "indexes": [tuple(i) for i in indexes]}


async def test_the_three_outboxes_are_one_table(database: object, engine: AsyncEngine) -> None:
    intake, callback, history = [await _outbox(engine, schema) for schema in SCHEMAS]

    assert intake["columns"], "the intake outbox was not migrated"
    assert intake == callback == history


async def test_the_migrated_outbox_is_what_the_models_declare(
    database: object, engine: AsyncEngine
) -> None:
    def differences(conn: Connection, metadata: MetaData) -> list[Any]:
        def only_the_outbox(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is not None and table.name == "outbox" and table.schema == schema

        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_object": only_the_outbox,
                "compare_type": True,
            },
        )
        return list(compare_metadata(context, metadata))

    for schema, metadata in SCHEMAS.items():
        async with engine.connect() as conn:
            found = await conn.run_sync(differences, metadata)
        assert found == [], f"{schema}.outbox differs from OutboxMixin: {found}"


async def test_every_migrated_schema_is_what_its_models_declare(
    database: object, engine: AsyncEngine
) -> None:
    """A model changed without a migration (or the reverse) fails here, not in production."""

    def differences(conn: Connection, metadata: MetaData, schema: str) -> list[Any]:
        # What the migrations' own autogenerate compares (history's monthly partitions of
        # the events are made at run time, not declared, and left out there too).
        include = include_object_in(metadata)

        def in_schema(obj: Any, name: str | None, type_: str, *rest: Any) -> bool:
            # Alembic's own bookkeeping is not a model.
            return include(obj, name, type_, *rest) and not (
                type_ == "table" and name == "alembic_version"
            )

        context = MigrationContext.configure(
            conn,
            opts={"include_schemas": True, "include_object": in_schema, "compare_type": True},
        )
        return list(compare_metadata(context, metadata))

    for schema, metadata in SCHEMAS.items():
        async with engine.connect() as conn:
            found = await conn.run_sync(differences, metadata, schema)
        assert found == [], f"the {schema} migrations differ from its models: {found}"
