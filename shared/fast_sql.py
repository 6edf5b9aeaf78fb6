"""Hot statements run on asyncpg directly, compiled once from their SQLAlchemy declaration.

SQLAlchemy's execution costs about twice asyncpg's own CPU per statement (the cache key, the
compiled-cache lookup, an execution context, a result object; bench/RESULTS.md, "CPU per
call"). A statement run once or more for every missed call is compiled here once per process,
with its parameters' processing (JSON as text, ...) taken from the same declaration, and run on
the session's own connection inside its transaction: the same SQL, the same parameters, the
same transaction as `session.execute` would give, for less. `tests/shared/test_fast_sql.py`
holds the two ways equal.

Errors go through SQLAlchemy's own handling, so a caller sees `sqlalchemy.exc.IntegrityError`,
`OperationalError`, ... as from `session.execute`, and a connection the server dropped is
invalidated as SQLAlchemy would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.expression import Executable

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
DIALECT = _DIALECT  # for the modules that compile from the same declarations (fast_load)

Processor = Callable[[Any], Any]
_REQUIRED = object()
_HELD = "fast_sql.connection"
# The adapter's isolation levels under which a read alone sees what it would see as a
# transaction's statement (`fetch(begin=False)`). None is the server's default, READ
# COMMITTED, which every service's locking already assumes (a locked row read afresh).
_EACH_STATEMENT_ITS_SNAPSHOT = frozenset({None, "read_committed", "autocommit"})


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement compiled for asyncpg: its text, and its parameters in `$n` order."""

    text: str
    names: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    # A value the statement binds itself (`literal(1)`, `.values(x=3)`), used when the
    # call does not name it; `_REQUIRED` for a parameter the call must give.
    defaults: tuple[Any, ...]

    @classmethod
    def of(cls, statement: Executable) -> Statement:
        """Compile `statement` once; its parameters must all be bound by name at the call.

        A list parameter for `IN` is expanded by SQLAlchemy at each execution and so has no
        fixed text: such a statement stays on `session.execute` (ValueError here).
        """
        compiled = statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ())
        processors: list[Processor | None] = []
        defaults: list[Any] = []
        for name in names:
            bind = compiled.binds[name]
            if bind.expanding or bind.callable is not None:
                raise ValueError(f"{name!r} is computed at execution; not a fixed statement")
            processors.append(bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT))
            defaults.append(_REQUIRED if bind.required else bind.value)
        return cls(compiled.string, names, tuple(processors), tuple(defaults))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params`, processed as SQLAlchemy would."""
        args = []
        for name, process, default in zip(self.names, self.processors, self.defaults, strict=True):
            value = params[name] if default is _REQUIRED else params.get(name, default)
            args.append(value if process is None else process(value))
        return args

    def driver_args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments as given, for a caller that encodes its values for
        asyncpg itself (intake's JSON, made text by orjson, several times faster)."""
        return [params[name] for name in self.names]


@functools.lru_cache(maxsize=256)
def compiled(statement: Executable) -> Statement:
    """`Statement.of(statement)`, once per statement object: for statements built once and
    kept (a module constant, or a `functools.cache`d builder's), never one built per call."""
    return Statement.of(statement)


async def fetch(
    session: AsyncSession,
    statement: Statement,
    params: Mapping[str, Any],
    *,
    begin: bool = True,
) -> Sequence[asyncpg.Record]:
    """`statement`'s rows, run in `session`'s transaction (begun here if it had not yet).

    `begin=False` is for a plain read (no lock, no write): as the transaction's first statement
    it then runs alone, without the BEGIN round trip before it (and, when nothing follows, the
    ROLLBACK after it); a later statement begins the transaction as usual. Under READ
    COMMITTED every statement sees what was committed when it started, inside a transaction
    or not, so the read sees the same either way (any other isolation begins as usual).
    """
    # The session's connection, asked for once per transaction: asking costs about 50 us
    # (two greenlet hops), a third of what this module saves per statement.
    held = session.info.get(_HELD)
    transaction = session.sync_session.get_transaction()
    if held is None or transaction is None or held[0] is not transaction:
        connection = await session.connection()
        fairy = await connection.get_raw_connection()
        held = (session.sync_session.get_transaction(), connection, fairy)
        session.info[_HELD] = held
    return await _run(held[1], held[2], statement, params, begin=begin)


async def fetchrow(
    session: AsyncSession, statement: Statement, params: Mapping[str, Any]
) -> asyncpg.Record | None:
    rows = await fetch(session, statement, params)
    return rows[0] if rows else None


async def run(
    connection: AsyncConnection, statement: Statement, params: Mapping[str, Any]
) -> Sequence[asyncpg.Record]:
    """`statement`'s rows on `connection`, in its transaction or, if it autocommits, alone."""
    return await _run(connection, await connection.get_raw_connection(), statement, params)


async def _run(
    connection: AsyncConnection,
    fairy: PoolProxiedConnection,
    statement: Statement,
    params: Mapping[str, Any],
    *,
    begin: bool = True,
) -> Sequence[asyncpg.Record]:
    adapter: Any = fairy.dbapi_connection  # SQLAlchemy's adapter around the asyncpg connection
    driver: asyncpg.Connection = fairy.driver_connection
    args = statement.args(params)
    sync = connection.sync_connection
    assert sync is not None  # a connection in use has its sync side
    if sync._has_events or sync.engine._has_events:
        # Whoever listens for SQLAlchemy's statements (a statement count in a test or a
        # benchmark, a tracer) hears these too; without listeners this costs two lookups.
        sync.dispatch.before_cursor_execute(sync, None, statement.text, tuple(args), None, False)
    try:
        async with adapter._execute_mutex:
            # The adapter begins its transaction lazily, at a statement's first execution, as
            # asyncpg has no BEGIN of its own: the same here (nothing under AUTOCOMMIT).
            if adapter._transaction is None and (
                begin or adapter.isolation_level not in _EACH_STATEMENT_ITS_SNAPSHOT
            ):
                await adapter._start_transaction()
            rows: Sequence[asyncpg.Record] = await driver.fetch(statement.text, *args)
            return rows
    except Exception as error:
        try:
            adapter._handle_exception(error)  # asyncpg's error as the DB-API's, as always
        except Exception as dbapi_error:
            # SQLAlchemy's own wrapping and disconnect handling (invalidating the connection).
            sync._handle_dbapi_exception(dbapi_error, statement.text, None, None, None)
        raise
