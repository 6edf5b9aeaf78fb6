"""`RINGBACK_REDIS_URL`: the Sentinel form read once, plain URLs passed on, bad ones refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from arq.connections import ArqRedis, RedisSettings
from pydantic import ValidationError
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis_url import (
    RedisUrlError,
    SentinelTarget,
    arq_worker_connection,
    parse_sentinel_url,
    redis_pool,
)
from shared.settings import CommonSettings
from tests.support.sentinel import SentinelSet, sentinel_set


def test_the_sentinel_form_names_sentinels_master_and_database() -> None:
    target = parse_sentinel_url("redis+sentinel://host:26379,host2:26380/mymaster/3")
    assert target == SentinelTarget((("host", 26379), ("host2", 26380)), "mymaster", 3)


def test_the_port_and_the_database_have_defaults_and_the_login_is_read() -> None:
    target = parse_sentinel_url("redis+sentinel://ringback:s%40cret@a,[::1]:26400/main")
    assert target.sentinels == (("a", 26379), ("::1", 26400))
    assert (target.service_name, target.db) == ("main", 0)
    assert (target.username, target.password) == ("ringback", "s@cret")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://host:26379", "name the master"),
        ("redis+sentinel://host:26379/", "name the master"),
        ("redis+sentinel:///mymaster/0", "empty"),
        ("redis+sentinel://a,,b/mymaster", "empty"),
        ("redis+sentinel://host:port/mymaster", "port"),
        ("redis+sentinel://host:70000/mymaster", "port"),
        ("redis+sentinel://:26379/mymaster", "no host"),
        ("redis+sentinel://[::1/mymaster", "IPv6"),
        ("redis+sentinel://host/mymaster/zero", "number"),
        ("redis+sentinel://host/mymaster/0/extra", "path"),
        ("redis+sentinel://host/mymaster?db=1", "query"),
    ],
)
def test_a_bad_sentinel_url_stops_the_start_and_says_why(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says):
        parse_sentinel_url(url)
    with pytest.raises(ValidationError) as refused:
        CommonSettings(redis_url=url.replace("host", "user:hunter2@host", 1))
    assert says in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_a_plain_url_goes_to_redis_py_and_arq_unchanged() -> None:
    url = "redis://127.0.0.1:6390/4"
    pool = redis_pool(url, socket_connect_timeout=2)
    assert type(pool) is ConnectionPool
    assert pool.connection_kwargs["port"] == 6390
    assert pool.connection_kwargs["db"] == 4
    assert arq_worker_connection(url)["redis_settings"] == RedisSettings.from_dsn(url)
    assert CommonSettings(redis_url="unix:///run/redis.sock?db=2").redis_url == (
        "unix:///run/redis.sock?db=2"
    )


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    with sentinel_set() as running:
        yield running


async def test_a_client_follows_the_master_through_a_failover(sentinels: SentinelSet) -> None:
    client = ArqRedis(connection_pool=redis_pool(sentinels.url, socket_connect_timeout=2))
    try:
        await client.set("ringback:test:before", "1")
        sentinels.kill("master")
        killed = time.monotonic()
        # Writes fail fast until the sentinel has promoted the replica; then a new connection
        # asks the sentinel again and lands on it, with what the master had.
        while True:
            try:
                await client.set("ringback:test:after", "1")
                break
            except RedisConnectionError:
                assert time.monotonic() - killed < 30, sentinels.log("sentinel")
                await asyncio.sleep(0.1)
        assert sentinels.master_port() == sentinels.ports["replica"]
        assert await client.get("ringback:test:before") == b"1"
    finally:
        await client.aclose(close_connection_pool=True)


async def test_the_workers_connection_rides_out_a_failover(sentinels: SentinelSet) -> None:
    worker = arq_worker_connection(sentinels.url, default_queue_name="ringback:test")
    client: ArqRedis = worker["redis_pool"]
    try:
        await client.set("ringback:test:before", "1")
        sentinels.kill("master")
        # One command, no loop: it waits for the promoted replica instead of failing.
        await client.set("ringback:test:after", "1")
        assert sentinels.master_port() == sentinels.ports["replica"]
        assert await client.get("ringback:test:before") == b"1"
    finally:
        await client.aclose(close_connection_pool=True)
