"""The worker and the relay run on uvloop, as the HTTP services do under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

import uvloop

from shared import eventloop


def test_run_returns_the_coroutines_value_from_a_uvloop_loop() -> None:
    async def which_loop() -> type[asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert eventloop.run(which_loop()) is uvloop.Loop


async def test_first_set_returns_when_any_event_is_set() -> None:
    wake, stop = asyncio.Event(), asyncio.Event()
    waiting = asyncio.ensure_future(eventloop.first_set(wake, stop))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    stop.set()
    await asyncio.wait_for(waiting, timeout=1)
    # Set before the wait: no wait at all.
    await asyncio.wait_for(eventloop.first_set(wake, stop), timeout=0.1)


def _unawaited(warnings_seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in warnings_seen if "never awaited" in str(w.message)]


async def test_a_wait_over_before_it_began_leaves_no_unawaited_coroutine() -> None:
    """The relays bound this wait by the time left to gather, which is often 0, and a
    shutdown cancels it: each such wait used to leave two coroutines Python warned about."""
    wake, stop = asyncio.Event(), asyncio.Event()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0):
                    await eventloop.first_set(wake, stop)
        cancelled = asyncio.ensure_future(eventloop.first_set(wake, stop))
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        await asyncio.sleep(0)
        gc.collect()
    assert _unawaited(seen) == []
