"""`RINGBACK_REDIS_URL` read once for every Redis client: one server, or a Sentinel-watched master.

A plain `redis://`, `rediss://` or `unix://` URL goes to redis-py and arq unchanged. The Sentinel
form names the sentinels, the master's service name and the database:

    redis+sentinel://[user:password@]host:26379,host2:26379/mymaster/0

The user and password are the Redis servers' (the sentinels are asked without them). Clients
ask a sentinel where the master is on every new connection, so after a failover the next
connection goes to the promoted replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel as SyncSentinel

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """A `RINGBACK_REDIS_URL` that cannot be used; the text never quotes the URL itself."""


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where a Sentinel-watched master is found: sentinels, service name, database, login."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel(url: str) -> bool:
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a `redis+sentinel://` URL, or a `RedisUrlError` saying what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise RedisUrlError(f"RINGBACK_REDIS_URL: a Sentinel URL starts with {SENTINEL_SCHEME}://")
    if "?" in rest or "#" in rest:
        raise RedisUrlError("RINGBACK_REDIS_URL: a Sentinel URL takes no query or fragment")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    segments = path.split("/") if path else []
    if not segments or not segments[0]:
        raise RedisUrlError(
            "RINGBACK_REDIS_URL: name the master after the sentinels "
            f"({SENTINEL_SCHEME}://host:26379,host2:26379/mymaster/0)"
        )
    if len(segments) > 2:
        raise RedisUrlError("RINGBACK_REDIS_URL: a Sentinel URL's path is /<master>[/<db>]")
    db = 0
    if len(segments) == 2 and segments[1]:
        if not segments[1].isdigit():
            raise RedisUrlError("RINGBACK_REDIS_URL: the database after the master is a number")
        db = int(segments[1])
    return SentinelTarget(sentinels, unquote(segments[0]), db, username, password)


def _host_port(part: str) -> tuple[str, int]:
    if not part:
        raise RedisUrlError("RINGBACK_REDIS_URL: a sentinel address is empty (host:port,...)")
    if part.startswith("["):  # [IPv6]:port
        host, bracket, port_text = part[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise RedisUrlError("RINGBACK_REDIS_URL: an IPv6 sentinel is written [address]:port")
        port_text = port_text[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise RedisUrlError("RINGBACK_REDIS_URL: a sentinel address has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RedisUrlError("RINGBACK_REDIS_URL: a sentinel's port is a number from 1 to 65535")
    return host, int(port_text)


def check_redis_url(url: str | None) -> str | None:
    """`url` unchanged if usable; a Sentinel URL is read now, so a bad one stops the start."""
    if url and is_sentinel(url):
        parse_sentinel_url(url)
    return url


def _sentinel(target: SentinelTarget, **connection_kwargs: Any) -> Sentinel:
    # Only the socket options reach the sentinels; the login is the Redis servers'.
    timeouts = {k: v for k, v in connection_kwargs.items() if k.startswith("socket_")}
    return Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs=timeouts,
        db=target.db,
        username=target.username,
        password=target.password,
        **connection_kwargs,
    )


class _MasterPool(SentinelConnectionPool):
    """The master's pool; disconnecting it also closes the connections to the sentinels."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        # redis-py also calls this when the master moved; the sentinel clients reconnect on
        # their next question, and at shutdown nothing is left open.
        for client in self.sentinel_manager.sentinels:
            await client.connection_pool.disconnect()


# A failover takes the sentinels' `down-after-milliseconds` plus an election: about 6 s with
# the manifests' settings (2 s in the tests). A client that rides it out retries a failed
# command with backoff for longer than that, about 15 s, asking the sentinels again each time.
_FAILOVER_RETRY = {
    "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), 10),
    "retry_on_error": [RedisConnectionError, RedisTimeoutError],
}


def redis_pool(
    url: str, *, ride_out_failover: bool = False, **connection_kwargs: Any
) -> ConnectionPool:
    """A redis-py connection pool for `url`: `ConnectionPool.from_url`, or the Sentinel master's.

    Through Sentinel each new connection asks the sentinels where the master is. By default a
    command fails fast during a failover, as with a Redis that is down (the rate limiter lets
    the request through, a job not enqueued is the sweeper's); `ride_out_failover` retries it
    until the replica is promoted instead, for a process whose loop must not stop (the worker).
    """
    if not is_sentinel(url):
        return ConnectionPool.from_url(url, **connection_kwargs)
    target = parse_sentinel_url(url)
    if ride_out_failover:
        connection_kwargs = {**_FAILOVER_RETRY, **connection_kwargs}
    manager = _sentinel(target, **connection_kwargs)
    return _MasterPool(  # type: ignore[no-untyped-call]
        target.service_name,
        manager,
        db=target.db,
        username=target.username,
        password=target.password,
        **connection_kwargs,
    )


def arq_worker_connection(url: str, **arq_redis_kwargs: Any) -> dict[str, Any]:
    """arq `Worker`'s keyword for `url`: `redis_settings`, or through Sentinel a `redis_pool`.

    arq's own Sentinel client gives up on the first failed command, and the worker's loop with
    it; ours rides out the failover. `arq_redis_kwargs` are `ArqRedis`'s (serializers, queue).
    """
    if not is_sentinel(url):
        return {"redis_settings": RedisSettings.from_dsn(url)}
    pool = redis_pool(url, ride_out_failover=True, socket_connect_timeout=2)
    return {"redis_pool": ArqRedis(connection_pool=pool, **arq_redis_kwargs)}


def sync_client(url: str) -> redis.Redis:
    """A blocking client for `url` (command-line tools), the Sentinel master's in that form."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url)
    target = parse_sentinel_url(url)
    sentinel = SyncSentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs={"socket_connect_timeout": 2}
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.service_name,
        db=target.db,
        username=target.username,
        password=target.password,
        socket_connect_timeout=2,
    )
    return client
