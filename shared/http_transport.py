"""Outgoing HTTP on aiohttp's connection pool, behind httpx's client.

httpx stays the client every caller uses (its API, timeouts, `MockTransport` in tests); only
the transport under it changes. httpx's own (httpcore over anyio) cost about 600-1,000 µs of
CPU per request here, where this one costs about half (bench/RESULTS.md, issue #21): a
missed call makes four to five requests (the SMS, two or three webhooks, its share of the
relays' batches). `httpx_aiohttp` adapts the request and the response; this module adds what
a sender here must be able to rely on:

- **A failure says whether the request may have reached the peer.** httpx's classes are kept
  with their meaning: `ConnectError`/`ConnectTimeout` only when nothing was sent (no call was
  placed, no SMS can have gone), `RemoteProtocolError`, `ReadError`, `ReadTimeout` when it
  may have been (`services/callback/dialers/base.py` tells the agent "perhaps a call").
  The adapter's own table maps every lost connection to `ConnectTimeout`, so its classes are
  replaced here by the aiohttp error that caused them.
- The pool's size and keep-alive are the caller's, as httpx's were. A proxy from the
  environment (`HTTPS_PROXY`, ...) is still httpx's: it mounts its own transport for those.
- `resolver`: every name is resolved through it (the webhooks' address check); an address
  literal in the URL never reaches a resolver, so `check_host` sees each request's host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# From the most specific: the first class an error is an instance of decides.
_MAPPING: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # Nothing was sent: no connection was made.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    # The request may have reached the peer.
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.ClientError, httpx.ReadError),
)


def _translated(error: BaseException) -> httpx.TransportError | None:
    """httpx's error for an aiohttp one (or for the adapter's translation of one)."""
    cause = error.__cause__ if isinstance(error, httpx.TransportError) else error
    for aiohttp_class, httpx_class in _MAPPING:
        if isinstance(cause, aiohttp_class):
            return httpx_class(str(cause) or type(cause).__name__)
    return None


class _Body(httpx.AsyncByteStream):
    """The response body, its read errors translated as the request's are."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except (aiohttp.ClientError, httpx.TransportError) as error:
            translated = _translated(error)
            if translated is None:
                raise
            raise translated from error

    async def aclose(self) -> None:
        await self.inner.aclose()


class PooledTransport(httpx.AsyncBaseTransport):
    """An httpx transport sending over one `aiohttp.ClientSession` (made on first use, in the
    running loop, as aiohttp requires)."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_seconds: float = 5.0,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        check_host: Callable[[str], None] | None = None,
    ) -> None:
        # The certificates httpx would trust (certifi's, or SSL_CERT_FILE's), not the system's.
        tls = httpx.create_ssl_context()

        def session() -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(
                limit=max_connections,
                ssl=tls,
                keepalive_timeout=keepalive_seconds,
                resolver=resolver,
                # The resolver decides each time (a name may move inside, DNS rebinding).
                use_dns_cache=resolver is None,
            )
            # No cookie jar: no peer of ours sets cookies worth keeping (httpx's client keeps
            # its own, as before).
            return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

        self._inner = AiohttpTransport(client=session)
        self._check_host = check_host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._check_host is not None:
            self._check_host(request.url.host)
        try:
            response = await self._inner.handle_async_request(request)
        except (aiohttp.ClientError, httpx.TransportError) as error:
            translated = _translated(error)
            if translated is None:
                raise
            raise translated from error
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
