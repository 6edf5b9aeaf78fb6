"""Async SQLAlchemy: engines, sessions, and the unit of work every request runs in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import structlog
from sqlalchemy import MetaData, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
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
    return create_async_engine(
        async_url(settings.database_url_for(service)),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": settings.db_command_timeout_seconds,
        },
    )


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


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed when the endpoint returns, before the response.

    Declared with `Depends(..., scope="function")`, so a failed commit is a visible error
    rather than a write lost after the client was told it succeeded.
    """
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            session.info.pop(_AFTER_COMMIT_KEY, None)
            raise
        else:
            await commit(session)


# SQLSTATE classes meaning "the server is not there for you right now": 08 connection
# exception, 57P01-57P03 admin/crash shutdown and "the database system is starting up".
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means PostgreSQL is unreachable or restarting, rather than a bug.

    Walks the explicit cause chain, since SQLAlchemy wraps asyncpg's errors (and asyncpg lets the
    socket's own `OSError` through when the server refuses the connection). The pool
    recovers by itself once the server is back (pre-ping discards dead connections), so
    callers answer 503 and let the client retry instead of a 500.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.TimeoutError):  # pool exhausted while connects hang
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
