"""Where a webhook may point: https in production, never an address inside our own network.

A subscriber's URL is checked when the endpoint is created or changed, and the address is
checked again on every connection (`GuardedBackend`): a name that resolved to a public
address at creation may resolve to 169.254.169.254 later (DNS rebinding), so the check
that counts is the one made on the very address the socket connects to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

URL_MAX_LENGTH = 2048
# A name that takes longer than this to resolve is refused rather than waited for.
RESOLVE_TIMEOUT_SECONDS = 5.0


class UnsafeUrl(ValueError):
    """The URL may not receive webhooks; the message says why, without the URL itself."""


def address_allowed(address: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local,
    metadata, multicast, reserved or unspecified; an IPv4-mapped IPv6 is judged as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_shape(url: str, *, require_https: bool) -> tuple[str, int]:
    """The URL's host and port if its form is acceptable; `UnsafeUrl` otherwise."""
    if len(url) > URL_MAX_LENGTH:
        raise UnsafeUrl(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The URL cannot be parsed.") from None
    allowed = ("https",) if require_https else ("https", "http")
    if parts.scheme not in allowed:
        raise UnsafeUrl(f"The URL must use {' or '.join(allowed)}.")
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host.")
    # Credentials in the URL would be shown by every listing of the endpoint.
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("The URL may not carry a user name or password.")
    if parts.fragment:
        raise UnsafeUrl("The URL may not have a fragment.")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to; `UnsafeUrl` when it resolves to none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError, UnicodeError):
        raise UnsafeUrl("The URL's host does not resolve.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl("The URL's host does not resolve.")
    return addresses


def check_addresses(addresses: Iterable[str]) -> None:
    """`UnsafeUrl` if any address is inside a private network: one is enough to be led there."""
    if not all(address_allowed(address) for address in addresses):
        raise UnsafeUrl("The URL resolves to a loopback, private, link-local or metadata address.")


async def check_url(url: str, *, require_https: bool, allow_private: bool) -> None:
    """The whole check made when an endpoint is created or its URL changed."""
    host, port = check_shape(url, require_https=require_https)
    if allow_private:
        return
    check_addresses(await resolve(host, port))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses: resolves the name itself, checks every address,
    and connects to a checked one. TLS still verifies the certificate against the name."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        if not self.allow_private:
            check_addresses(addresses)
        return await self.inner.connect_tcp(
            addresses[0],
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("Webhooks are not sent over Unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_transport(
    *, allow_private: bool, max_connections: int, timeout_seconds: float
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
    # httpx takes no network backend of its own; its pool is replaced by an equal one that
    # has ours (the same arguments httpx passes, from the same defaults).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=timeout_seconds,
        network_backend=GuardedBackend(allow_private=allow_private),
    )
    return transport
