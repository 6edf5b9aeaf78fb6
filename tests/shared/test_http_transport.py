"""Outgoing HTTP over aiohttp's pool (`shared.http_transport`): a failure keeps httpx's class
and its meaning, "nothing was sent" or "it may have arrived", which callers act on (a dial
said to have failed when it may have rung the agent would be tried again)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from shared.http_transport import PooledTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=PooledTransport(max_connections=4), timeout=httpx.Timeout(1.0)
    ) as client:
        yield client


async def test_a_request_and_its_answer_pass_through(client: httpx.AsyncClient) -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                return
            body = b'{"id": "m-1", "text": "\xc3\xa4"}'
            writer.write(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                b"X-Peer: yes\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    server, url = await _serve(answer)
    async with server:
        for _ in range(2):  # the second over the kept connection
            response = await client.post(
                f"{url}/sms?x=1", json={"to": "+358401234567"}, headers={"Idempotency-Key": "k"}
            )
            assert response.status_code == 201
            assert response.headers["x-peer"] == "yes"
            assert response.json() == {"id": "m-1", "text": "ä"}
    assert len(seen) == 2
    assert seen[0].startswith(b"POST /sms?x=1 HTTP/1.1\r\n")
    assert b"idempotency-key: k" in seen[0].lower()
    assert seen[0].endswith(b'{"to":"+358401234567"}')


async def test_nobody_listening_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{port}/sms", json={})


async def test_a_peer_that_closes_after_the_request_may_have_taken_it(
    client: httpx.AsyncClient,
) -> None:
    """Not a connect error: the request arrived (a dialer says "perhaps a call")."""
    arrived = asyncio.Event()

    async def take_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        arrived.set()

    server, url = await _serve(take_and_hang_up)
    async with server:
        with pytest.raises(httpx.TransportError) as raised:
            await client.post(f"{url}/calls", json={"to": "agent"})
    assert arrived.is_set()
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(raised.value, httpx.RemoteProtocolError)


async def test_a_peer_that_never_answers_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    async def take_and_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(2)

    server, url = await _serve(take_and_wait)
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{url}/calls", json={}, timeout=httpx.Timeout(0.3))


async def test_a_body_cut_short_is_a_read_error(client: httpx.AsyncClient) -> None:
    async def half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()

    server, url = await _serve(half_a_body)
    async with server:
        with pytest.raises(httpx.TransportError) as raised:
            await client.post(f"{url}/sms", json={})
    assert isinstance(raised.value, httpx.ReadError | httpx.RemoteProtocolError)
