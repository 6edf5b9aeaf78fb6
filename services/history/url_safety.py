"""Where a webhook may point: https in production, never an address inside our own network.

A subscriber's URL is checked when the endpoint is created or changed, and the address is
checked again on every connection (`GuardedResolver`): a name that resolved to a public
address at creation may resolve to 169.254.169.254 later (DNS rebinding), so the check
that counts is the one made on the very address the socket connects to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

from shared.http_transport import PooledTransport

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


class GuardedResolver(AbstractResolver):
    """Resolves a subscriber's name itself, checks every address, and gives the pool one
    checked address to connect to. TLS still verifies the certificate against the name."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve(host, port)
        if not self.allow_private:
            check_addresses(addresses)
        address = addresses[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


def guarded_transport(
    *, allow_private: bool, max_connections: int, timeout_seconds: float
) -> httpx.AsyncBaseTransport:
    """A transport that connects only where `GuardedResolver` allows, on every connection.

    A URL naming an address instead of a host is never resolved, so its address is checked
    as each request starts."""

    def check_host(host: str) -> None:
        if not allow_private and _is_address(host):
            check_addresses([host.strip("[]")])

    return PooledTransport(
        max_connections=max_connections,
        keepalive_seconds=timeout_seconds,
        resolver=GuardedResolver(allow_private=allow_private),
        check_host=check_host,
    )


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
