"""The event loop every long-running process runs on: uvloop where it is installed.

The HTTP services get uvloop from uvicorn (`loop="auto"`); the worker and the relay started
their loops with `asyncio.run`, the standard loop, whose Python-level `select` and callback
dispatch were a fifth of the worker's CPU per call (bench/RESULTS.md, issue #21). uvloop comes
with `uvicorn[standard]`; where it is missing (a platform without wheels) the standard loop
runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in the lock file
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop `loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


async def first_set(*events: asyncio.Event) -> None:
    """Wait until one of `events` is set (bound it with `asyncio.timeout`).

    The waits are made here, by the task that awaits them. Made by the caller, as arguments
    (`wait_for(first(a.wait(), b.wait()), timeout=0)`), they were left un-awaited whenever
    the wait ended before it began (a timeout of 0, a shutdown's cancel), and Python warned
    of each at exit ("coroutine 'Event.wait' was never awaited").
    """
    if any(event.is_set() for event in events):
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
