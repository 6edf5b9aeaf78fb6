"""Whole mapped rows read on asyncpg directly, and made the session's objects as the ORM would.

An ORM `select(Callback, Queue)` costs about a millisecond of CPU on a slow core before its
round trip: the compiled-cache key, the ORM's compile state, an execution context, a result,
and a loading context building each object (bench/RESULTS.md, issue #21). The booking job and
every booking attempt lock their callback this way, and most attempts are refused, so that
millisecond is most of a refusal's CPU.

`Load.of(statement)` takes the ORM statement as declared, once, and runs the same SQL through
`shared.fast_sql`: the same FROM, WHERE and `FOR UPDATE OF`, the entities' columns as the ORM
selects them (deferred ones left out). Each row becomes the entities' objects the way the ORM's
own loader makes them: a new instance's attributes written as loaded (no validators, no
history), its identity key set, and the object attached to the session as persistent, so a
change to it is flushed as an UPDATE at commit. An object the session holds already is
refreshed in place, as `populate_existing` does. Relationships are left unloaded, as a plain
load leaves them. `tests/shared/test_fast_load.py` holds the two ways equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Column, Select, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from shared import fast_sql
from shared.fast_sql import Processor


@dataclass(frozen=True, slots=True)
class _Entity:
    """Where one entity's columns sit in a row, and how each becomes its attribute."""

    mapper: Mapper[Any]
    start: int
    keys: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    primary_key: tuple[int, ...]  # positions within `keys`
    processed: bool  # any column whose value SQLAlchemy would change on the way out

    def materialise(self, session: Session, row: tuple[Any, ...]) -> Any | None:
        values = row[self.start : self.start + len(self.keys)]
        if self.processed:
            values = tuple(
                v if process is None or v is None else process(v)
                for v, process in zip(values, self.processors, strict=True)
            )
        identity = tuple([values[i] for i in self.primary_key])
        if all(value is None for value in identity):
            return None  # an outer join that found no row
        key = self.mapper.identity_key_from_primary_key(identity)
        held = session.identity_map.get(key)
        if held is not None:
            # `populate_existing`: the row as read now, whatever the object held before.
            for name, value in zip(self.keys, values, strict=True):
                set_committed_value(held, name, value)
            return held
        # What the ORM's loader does for a row it has not seen (`loading._instance`): a new
        # instance with its identity, put in the identity map as persistent, the values
        # straight into its dict (no validator runs, no attribute has history). The public
        # way there (`make_transient_to_detached`, then `Session.add`) cost more than the
        # ORM's whole load: it expires what was not written, then walks the cascades.
        instance = self.mapper.class_manager.new_instance()
        state: InstanceState[Any] = instance_state(instance)
        state.key = key
        state.identity_token = None
        state.session_id = session.hash_key
        session.identity_map._add_unpresent(state, key)
        state.dict.update(zip(self.keys, values, strict=True))
        return instance


@dataclass(frozen=True, slots=True)
class Load:
    """An ORM SELECT of whole entities, compiled once for asyncpg."""

    statement: fast_sql.Statement
    entities: tuple[_Entity, ...]
    # The plain values selected after the entities (`select(A, B, expr)`), as results.
    values: tuple[Processor | None, ...] = ()

    @classmethod
    def of(cls, statement: Select[*tuple[Any, ...]]) -> Load:
        """`statement` selects mapped entities (`select(A, B)...`), then any plain values; its
        FROM, WHERE, ordering and locking are kept, its entities' columns become each one's
        loaded columns, and each value comes after them as the ORM would give it."""
        columns: list[Any] = []
        entities = []
        descriptions = statement.column_descriptions
        whole = [
            d.get("entity") is not None and d.get("expr") is d.get("entity") for d in descriptions
        ]
        if not any(whole) or whole != sorted(whole, reverse=True):
            raise ValueError("the statement selects whole entities first, then plain values")
        for description, is_entity in zip(descriptions, whole, strict=True):
            if not is_entity:
                continue
            mapper: Mapper[Any] = inspect(description["entity"])
            attributes = [p for p in mapper.column_attrs if not p.deferred]
            own: list[Column[Any]] = [p.columns[0] for p in attributes]  # type: ignore[misc]
            processors = tuple(_result_processor(c) for c in own)
            entities.append(
                _Entity(
                    mapper=mapper,
                    start=len(columns),
                    keys=tuple(p.key for p in attributes),
                    processors=processors,
                    processed=any(p is not None for p in processors),
                    primary_key=tuple(own.index(c) for c in mapper.primary_key),  # type: ignore[arg-type]
                )
            )
            columns += own
        plain = [
            d["expr"] for d, is_entity in zip(descriptions, whole, strict=True) if not is_entity
        ]
        compiled = fast_sql.Statement.of(statement.with_only_columns(*columns, *plain))
        return cls(compiled, tuple(entities), tuple(_result_processor(v) for v in plain))

    async def rows(
        self, session: AsyncSession, params: Mapping[str, Any], *, begin: bool = True
    ) -> list[tuple[Any | None, ...]]:
        """Each row's objects in the statement's entity order (None: an outer join's miss),
        then its plain values. `begin`: as `fast_sql.fetch`'s (False: a read without lock may
        run before the transaction begins)."""
        records: Sequence[asyncpg.Record] = await fast_sql.fetch(
            session, self.statement, params, begin=begin
        )
        sync = session.sync_session
        rows = [tuple(record) for record in records]
        first = len(rows[0]) - len(self.values) if rows else 0
        return [
            (
                *[e.materialise(sync, row) for e in self.entities],
                *[
                    v if process is None or v is None else process(v)
                    for v, process in zip(row[first:], self.values, strict=True)
                ],
            )
            for row in rows
        ]


def _result_processor(column: Any) -> Processor | None:
    processor: Processor | None = column.type.dialect_impl(fast_sql.DIALECT).result_processor(
        fast_sql.DIALECT, None
    )
    return processor
