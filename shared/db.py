"""Async SQLAlchemy: engines, sessions, and the unit of work every request runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import MetaData, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from starlette.requests import Request

from shared.settings import CommonSettings

log = structlog.get_logger("ringback.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AfterCommit = Callable[[], Awaitable[None]]
_AFTER_COMMIT_KEY = "ringback.after_commit"


def make_metadata(schema: str) -> MetaData:
    """Metadata for one service's schema, with stable constraint names for Alembic."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def async_url(url: str) -> URL:
    """`postgresql://...` as operators write it, with the asyncpg driver SQLAlchemy needs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def asyncpg_dsn(url: str) -> str:
    """The same URL as a plain DSN for asyncpg itself (LISTEN connections, bulk tools)."""
    return async_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(
    settings: CommonSettings, *, application_name: str, service: str | None = None
) -> AsyncEngine:
    """An engine for `service`'s database whose connections name their process."""
    engine = create_async_engine(
        async_url(settings.database_url_for(service)),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # A statement's parameters are phone numbers and addresses: never in an error's text.
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": settings.db_command_timeout_seconds,
            **pooler_connect_args(settings),
        },
    )
    # Instead of `pool_pre_ping`, which costs three round trips per checkout with asyncpg
    # (BEGIN, `;`, ROLLBACK): see `_discard_closed`.
    event.listen(engine.sync_engine.pool, "checkout", _discard_closed)
    return engine


def pooler_connect_args(settings: CommonSettings) -> dict[str, Any]:
    """asyncpg's arguments for `settings.db_pooler`: none without one.

    In PgBouncer's transaction pooling, consecutive transactions of one client connection run
    on different server connections, and so may an autocommitted statement's prepare and its
    execution: a named prepared statement is then missing where it runs ("prepared statement
    ... does not exist", 86 of 200 autocommitted statements in a test against two server
    connections). So no statement cache, in asyncpg nor in SQLAlchemy's dialect, and the
    dialect's statements unnamed: the unnamed statement is parsed and run in one exchange and
    replaced by the next, so nothing is left behind on a server connection either.
    """
    if settings.db_pooler != "pgbouncer":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed_statement,
    }


def _unnamed_statement() -> str:
    return ""


@asynccontextmanager
async def session_connection(
    engine: AsyncEngine, settings: CommonSettings, *, service: str, application_name: str
) -> AsyncIterator[AsyncConnection]:
    """A connection that stays one server session across its transactions.

    For a session advisory lock held over several transactions: a pooled connection is one,
    unless a pooler in transaction mode stands between, then the lock goes to PostgreSQL
    itself (`direct_database_url_for`) on a connection of its own.
    """
    if settings.db_pooler is None:
        async with engine.connect() as connection:
            yield connection
        return
    direct = create_async_engine(
        async_url(settings.direct_database_url_for(service)),
        poolclass=NullPool,
        hide_parameters=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": settings.db_command_timeout_seconds,
        },
    )
    try:
        async with direct.connect() as connection:
            yield connection
    finally:
        await direct.dispose()


def _discard_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection whose socket the server has closed.

    A restart or failover closes every connection (PostgreSQL says so, then hangs up), and
    asyncpg notices at once, so an idle pooled connection already reports itself closed: the
    pool is then invalidated, as a failed pre-ping would, and this checkout gets a new
    connection, all without a round trip. A connection that dies mid-statement
    is invalidated with the whole pool by SQLAlchemy's disconnect handling (or by
    `driver_connection`), and the request is answered 503 (`database_unavailable`).
    """
    if dbapi_connection.driver_connection.is_closed():
        raise sa_exc.InvalidatePoolError("the server closed this pooled connection")


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, hook: AfterCommit) -> None:
    """Run `hook` once the unit of work has committed (e.g. enqueue a job), never before."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(hook)


async def commit(session: AsyncSession) -> None:
    """Commit, then run the after-commit hooks; a failing hook is logged, not raised.

    Hooks only nudge work that is already durable (a sweeper finds it anyway), so a hook
    failure must not turn a committed write into an error for the caller.
    """
    await session.commit()
    hooks: list[AfterCommit] = session.info.pop(_AFTER_COMMIT_KEY, [])
    for hook in hooks:
        try:
            await hook()
        except Exception:
            log.exception("db.after_commit.failed")


async def rollback(session: AsyncSession) -> None:
    """Roll back, and forget the after-commit hooks of what was rolled back."""
    await session.rollback()
    session.info.pop(_AFTER_COMMIT_KEY, None)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session committed when the block ends without error, rolled back otherwise."""
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await rollback(session)
            raise
        else:
            await commit(session)


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, before the response.

    Declared with `Depends(..., scope="function")`, so a failed commit is a visible error
    rather than a write lost after the client was told it succeeded.
    """
    async with unit_of_work(request.app.state.session_factory) as session:
        yield session


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection as asyncpg's own, for a hot path that is one hand-written statement.

    The pool, its limits and the checkout check are the engine's; asyncpg's statement cache
    makes the statement a prepared one. Errors are asyncpg's (`database_unavailable` knows
    them). Only an error the server reported for the statement itself (a unique violation,
    ...) leaves the connection fit to pool again; after anything else it is discarded.
    """
    async with engine.connect() as connection:
        proxied = await connection.get_raw_connection()
        driver: asyncpg.Connection = proxied.driver_connection
        try:
            yield driver
        except BaseException as exc:
            if not _fit_to_pool(driver, exc):
                await connection.invalidate()
            raise


def _fit_to_pool(driver: asyncpg.Connection, exc: BaseException) -> bool:
    # A shutdown's error arrives just before the server hangs up: the connection is not closed
    # yet but is stuck waiting for a ReadyForQuery that never comes, and the next statement
    # on it fails with asyncpg's "another operation is in progress". A timeout or a
    # cancellation can leave the protocol mid-statement in the same way.
    return (
        not driver.is_closed()
        and isinstance(exc, asyncpg.PostgresError)
        and not database_unavailable(exc)
    )


# SQLSTATE classes meaning "the server is not there for you right now": 08 connection
# exception, 57P01-57P03 admin/crash shutdown and "the database system is starting up".
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means PostgreSQL is unreachable or restarting, rather than a bug.

    Walks the explicit cause chain, since SQLAlchemy wraps asyncpg's errors (and asyncpg lets the
    socket's own `OSError` through when the server refuses the connection). The pool
    recovers by itself once the server is back (closed connections are discarded at
    checkout), so callers answer 503 and let the client retry instead of a 500.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError):  # pool exhausted while connects hang
            return True
        # asyncpg's own words for a call on a connection the server has hung up.
        if isinstance(current, asyncpg.InterfaceError) and "connection is closed" in str(current):
            return True
        # A server shutting down tells each idle connection so ("terminating connection due
        # to administrator command") just before it hangs up. asyncpg treats a message on an
        # idle connection as a protocol fault, and a statement sent before the hang-up is
        # seen fails with this ("cannot switch to state ...; another operation is in
        # progress"). Misuse of a connection by our own code is an `InterfaceError` instead.
        if isinstance(current, asyncpg.InternalClientError):
            return True
        if isinstance(
            current,
            asyncpg.PostgresConnectionError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            | asyncpg.CrashShutdownError
            | ConnectionError
            | TimeoutError,
        ):
            return True
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        # asyncio's connect to several addresses fails with a plain OSError of them all.
        if type(current) is OSError and "connect" in str(current).lower():
            return True
        # SQLAlchemy keeps the driver's error as `orig`, the driver's own as `__cause__`.
        current = getattr(current, "orig", None) or current.__cause__
    return False


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
