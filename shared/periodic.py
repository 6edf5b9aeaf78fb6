"""A task an app runs every so often while it serves (history's purge and partitions ahead).

Every instance runs it; the work itself takes a lock so that one instance does it at a time.
The first turn comes soon after start, at a random point in the first `first_within` seconds,
so a service restarted often still gets its turn and instances started together spread out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from shared.service_app import Extension

log = structlog.get_logger("ringback.periodic")

# The work of one turn: given the app and the stop signal (set at shutdown; long work stops
# between steps and releases its own locks rather than being cancelled).
Work = Callable[[FastAPI, asyncio.Event], Awaitable[object]]


def periodic_extension(*, name: str, interval: float, first_within: float, work: Work) -> Extension:
    """An app extension running `work` every `interval` seconds; a failed turn is logged
    (as `<name>.failed`) and the next turn comes as planned."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            delay = min(interval, first_within) * (0.5 + random.random() / 2)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    return
                try:
                    await work(app, stop)
                except Exception:
                    log.exception(f"{name}.failed")
                delay = interval

        task = asyncio.create_task(loop(), name=name)
        try:
            yield
        finally:
            # Not cancelled: the work stops between its steps and releases its locks itself.
            stop.set()
            await task

    return extension
