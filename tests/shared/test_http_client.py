"""The outgoing clients (`shared.http`): each request stands alone, whatever a peer answered
before it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.http import StatelessClient, TracedClient
from shared.http_transport import PooledTransport
from tests.shared.test_http_transport import _read_request, _serve


@pytest.mark.parametrize("client_class", [TracedClient, StatelessClient])
async def test_a_cookie_a_peer_sets_is_not_sent_back(client_class: type[httpx.AsyncClient]) -> None:
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=peer-state; Path=/\r\n"
                b"Content-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    server, url = await _serve(answer)
    async with (
        server,
        client_class(
            transport=PooledTransport(max_connections=2), timeout=httpx.Timeout(2.0)
        ) as client,
    ):
        first = await client.post(f"{url}/hook", content=b"{}")
        assert first.cookies["session"] == "peer-state"  # the answer still shows it
        await client.post(f"{url}/hook", content=b"{}")
    assert len(seen) == 2
    assert b"cookie:" not in seen[1].lower()
