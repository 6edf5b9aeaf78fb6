"""Requests from concurrent tasks answered together: one statement for what arrived meanwhile.

A worker runs dozens of jobs at once, and each used to take its own pooled connection for one
small statement (a send's claim, its result). `Coalescer.submit` answers the same request
but, while a batch is in flight, requests queue up and the next batch takes them all.
Nothing waits on a timer: a lone request goes at once (no added latency when the worker is
quiet), and batches grow only when requests arrive faster than one round trip.

A waiter that is cancelled stops waiting, but its request, once in a batch, still runs: the
caller must tolerate that (a claimed send left unsent is re-sent when its lease runs out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

# Run a batch: one answer per request, in the requests' order.
RunBatch = Callable[[Sequence[_T]], Awaitable[Sequence[_R]]]


class Coalescer(Generic[_T, _R]):
    """Runs `run` over the requests of concurrent callers, at most `in_flight` batches at a
    time and at most `max_batch` requests in one."""

    def __init__(self, run: RunBatch[_T, _R], *, max_batch: int = 100, in_flight: int = 1) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("max_batch and in_flight must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._running = 0
        self._waiting: list[tuple[_T, asyncio.Future[_R]]] = []
        # Batch tasks are kept here: the event loop holds only weak references to tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: _T) -> _R:
        """The answer to `request`, from the batch it joins."""
        answer: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        if self._running < self._in_flight:
            self._start()
        return await answer

    def _start(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        self._running += 1
        task = asyncio.create_task(self._answer(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: list[tuple[_T, asyncio.Future[_R]]]) -> None:
        try:
            answers = await self._run([request for request, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
        except asyncio.CancelledError:
            # Shut down mid-batch: its waiters are cancelled with it.
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as exc:
            # Every waiter of the batch sees the failure, as each would have on its own.
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
        else:
            for (_, answer), result in zip(batch, answers, strict=True):
                if not answer.done():
                    answer.set_result(result)
        finally:
            self._running -= 1
            if self._waiting:
                self._start()
