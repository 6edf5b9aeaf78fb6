"""Where the test run's PostgreSQL and Redis come from, and how each run gets its own."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import asyncpg
import redis

from services.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from shared.db import asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_DIR = ROOT / ".data" / "test"


def _tcp_open(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    if parsed.scheme.startswith("unix") or not parsed.hostname:
        return True
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class TestDatabase:
    admin_url: str
    url: str
    name: str


@contextmanager
def test_database() -> Iterator[TestDatabase]:
    """A fresh database for this run, dropped afterwards (embedded server as fallback)."""
    admin = os.environ.get(
        "RINGBACK_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    embedded: EmbeddedPostgres | None = None
    if not _tcp_open(admin, 5432):
        embedded = EmbeddedPostgres(EMBEDDED_DIR / "pg")
        embedded.start()
        admin = embedded.url("postgres")
    name = f"ringback_test_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = _with_database(admin, name)
    try:
        yield TestDatabase(admin_url=admin, url=url, name=name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if embedded is not None:
            embedded.stop()


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def test_redis() -> Iterator[str]:
    """A Redis database index of our own for this run, flushed afterwards."""
    base = os.environ.get("RINGBACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    embedded: EmbeddedRedis | None = None
    if not _tcp_open(base, 6379):
        embedded = EmbeddedRedis(EMBEDDED_DIR / "redis", persist=False)
        base = embedded.start()
    claimed: int | None = None
    control = redis.Redis.from_url(base)
    try:
        # Claim a free database index so two runs on one Redis never see each other's jobs.
        for index in range(1, 16):
            if control.set(f"ringback:test-db:{index}", os.getpid(), nx=True, ex=4 * 3600):
                claimed = index
                break
        if claimed is None:
            raise RuntimeError("every Redis database index 1-15 is claimed by another test run")
        url = _redis_db(base, claimed)
        redis.Redis.from_url(url).flushdb()
        yield url
    finally:
        if claimed is not None:
            redis.Redis.from_url(_redis_db(base, claimed)).flushdb()
            control.delete(f"ringback:test-db:{claimed}")
        control.close()
        if embedded is not None:
            embedded.stop()


def _redis_db(url: str, index: int) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return f"unix://{parsed.path}?db={index}"
    return parsed._replace(path=f"/{index}", query="").geturl()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
