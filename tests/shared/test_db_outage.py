"""A server's shutdown notice reaching a pooled connection is an outage, not a bug.

PostgreSQL shutting down (or an operator's `pg_terminate_backend`) sends each idle connection
a FATAL notice, then hangs up. Between the two, the connection still looks open to the pool.
A proxy between the pool and the real server holds the hang-up back for a moment, so a
statement lands in that gap every time instead of once in a while under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import asyncpg_dsn, create_engine, database_unavailable, driver_connection
from shared.settings import CommonSettings
from tests.support import infra

HANG_UP_DELAY = 1.0


class SlowHangUpProxy:
    """Forwards TCP both ways at once; passes on the server's hang-up `delay` seconds late."""

    def __init__(self, upstream_host: str, upstream_port: int, delay: float) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_close: float
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        await asyncio.sleep(delay_close)
        writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._pipe(client_r, server_w, 0), self._pipe(server_r, client_w, self.delay)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SlowHangUpProxy]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


@pytest.fixture
async def proxied_url(database: infra.TestDatabase) -> AsyncIterator[str]:
    url = make_url(database.url)
    proxy = SlowHangUpProxy(url.host or "127.0.0.1", url.port or 5432, HANG_UP_DELAY)
    async with proxy.running():
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


async def _terminate(admin_url: str, pid: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def _backend_pid_by_driver(engine: AsyncEngine) -> int:
    """The hot paths' way: asyncpg's own connection from the pool (`driver_connection`)."""
    async with driver_connection(engine) as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def _backend_pid_by_session(engine: AsyncEngine) -> int:
    """Every other path: a SQLAlchemy connection."""
    async with engine.connect() as conn:
        pid: int = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def _failure(statement: Awaitable[object]) -> Exception:
    try:
        await statement
    except Exception as exc:
        return exc
    raise AssertionError("a statement on a terminated connection succeeded")


@pytest.mark.parametrize("backend_pid", [_backend_pid_by_driver, _backend_pid_by_session])
async def test_a_statement_on_a_terminated_pooled_connection_reads_as_unavailable(
    database: infra.TestDatabase,
    proxied_url: str,
    backend_pid: Callable[[AsyncEngine], Awaitable[int]],
) -> None:
    settings = CommonSettings(database_url=proxied_url, db_pool_size=1, db_max_overflow=0)
    engine = create_engine(settings, application_name="ringback.tests.outage")
    try:
        pid = await backend_pid(engine)
        await _terminate(database.url, pid)
        await asyncio.sleep(HANG_UP_DELAY / 4)  # the notice has arrived; the hang-up has not

        failure = await _failure(backend_pid(engine))
        # A 503 with Retry-After for the caller, not a 500.
        assert database_unavailable(failure), repr(failure)

        # Once the hang-up is through, the pool serves a working connection by itself.
        await asyncio.sleep(HANG_UP_DELAY)
        assert await backend_pid(engine) != pid
    finally:
        await engine.dispose()
