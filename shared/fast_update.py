"""A loaded object's changed columns written in one UPDATE, as the ORM's flush would write them.

The ORM's flush of one changed object costs about half a millisecond of CPU on a slow core
before its round trip (the unit of work's sort, the per-column history, an execution context;
bench/RESULTS.md, issue #21). The booking job changes its callback once and then flushes it to
take the seat last, so that flush was the last of its statements still through the ORM.

`write_changes(session, instance)` writes what the flush would: the columns whose history has
a change (a value set back to what was loaded writes nothing), plus each column's Python-side
`onupdate` the change did not set, by primary key, through `shared.fast_sql` (one statement
compiled per set of columns, kept per process). The row must be there, as the flush requires
(`StaleDataError` otherwise). The written values become the object's loaded state, so the
flush at commit finds nothing left to write. `tests/shared/test_fast_update.py` holds the two
ways equal.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import ColumnDefault, Table, bindparam, inspect, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ColumnProperty, Mapper
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from shared import fast_sql


async def write_changes(session: AsyncSession, instance: object) -> None:
    """Write `instance`'s changed columns now, in `session`'s transaction."""
    state = inspect(instance)
    if not state.persistent:
        raise ValueError("only an object loaded in this session has changes to write")
    mapper = state.mapper
    changes: dict[str, Any] = {}
    for key in list(state.committed_state):
        prop = mapper.attrs.get(key)
        if not isinstance(prop, ColumnProperty):
            continue
        added = state.attrs[key].history.added
        if added:
            changes[key] = added[0]
    if not changes:
        return
    for key, default in _on_update(mapper):
        if key not in changes:
            changes[key] = default.arg(None) if default.is_callable else default.arg
    identity = state.identity
    assert identity is not None  # a persistent object has one
    primary = _primary_key_names(mapper)
    params = {**changes, **dict(zip(primary, identity, strict=True))}
    rows = await fast_sql.fetch(session, _statement(mapper, frozenset(changes)), params)
    if len(rows) != 1:
        raise StaleDataError(f"{mapper.class_.__name__} {identity} was not there to update")
    for key, value in changes.items():
        set_committed_value(instance, key, value)


@functools.cache
def _on_update(mapper: Mapper[Any]) -> tuple[tuple[str, ColumnDefault], ...]:
    """The columns whose `onupdate` the flush computes in Python, by attribute key."""
    found = []
    for prop in mapper.column_attrs:
        onupdate = prop.columns[0].onupdate
        if onupdate is None:
            continue
        if not isinstance(onupdate, ColumnDefault) or not (
            onupdate.is_callable or onupdate.is_scalar
        ):
            raise ValueError(f"{prop.key}'s onupdate is computed in SQL: flush it with the ORM")
        found.append((prop.key, onupdate))
    return tuple(found)


@functools.cache
def _primary_key_names(mapper: Mapper[Any]) -> tuple[str, ...]:
    return tuple(f"pk_{i}" for i in range(len(mapper.primary_key)))


@functools.cache
def _statement(mapper: Mapper[Any], keys: frozenset[str]) -> fast_sql.Statement:
    table = mapper.local_table
    assert isinstance(table, Table)  # a mapped class's own table, not a join
    where = [
        column == bindparam(name, type_=column.type)
        for column, name in zip(mapper.primary_key, _primary_key_names(mapper), strict=True)
    ]
    columns = {key: mapper.attrs[key].columns[0] for key in sorted(keys)}
    values = {c.key: bindparam(key, type_=c.type) for key, c in columns.items()}
    return fast_sql.Statement.of(
        update(table).where(*where).values(values).returning(*mapper.primary_key)
    )
