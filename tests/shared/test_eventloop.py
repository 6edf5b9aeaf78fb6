"""The worker and the relay run on uvloop, as the HTTP services do under uvicorn."""

from __future__ import annotations

import asyncio

import uvloop

from shared import eventloop


def test_run_returns_the_coroutines_value_from_a_uvloop_loop() -> None:
    async def which_loop() -> type[asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert eventloop.run(which_loop()) is uvloop.Loop
