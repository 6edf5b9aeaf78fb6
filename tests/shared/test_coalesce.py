"""Concurrent requests answered by one batch: who waits, who goes together, who sees a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.coalesce import Coalescer


async def _settle() -> None:
    """Let every ready task run until each waits (a submit starts its batch one turn later)."""
    for _ in range(3):
        await asyncio.sleep(0)


class Recorder:
    """A batch function that keeps each batch it was given and can be held mid-batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on: int | None = None
        self.short = False

    async def __call__(self, requests: Sequence[int]) -> list[int]:
        self.batches.append(list(requests))
        await self.release.wait()
        if self.fail_on is not None and self.fail_on in requests:
            raise ValueError(f"refused {self.fail_on}")
        answers = [request * 10 for request in requests]
        return answers[:-1] if self.short else answers


async def test_a_lone_request_goes_at_once() -> None:
    run = Recorder()
    coalescer = Coalescer(run)
    assert await coalescer.submit(1) == 10
    assert await coalescer.submit(2) == 20
    assert run.batches == [[1], [2]]


async def test_requests_that_arrive_during_a_batch_go_together_in_the_next() -> None:
    run = Recorder()
    run.release.clear()
    coalescer = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(1))
    await _settle()
    rest = [asyncio.create_task(coalescer.submit(n)) for n in (2, 3, 4)]
    await _settle()
    assert run.batches == [[1]]  # the others wait for the one in flight
    run.release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40]
    assert run.batches == [[1], [2, 3, 4]]


async def test_a_batch_takes_at_most_max_batch_and_in_flight_batches_run_side_by_side() -> None:
    run = Recorder()
    run.release.clear()
    coalescer = Coalescer(run, max_batch=2, in_flight=2)
    tasks = [asyncio.create_task(coalescer.submit(n)) for n in range(1, 8)]
    await _settle()
    # Two start at once, each with what was waiting when it started.
    assert run.batches == [[1], [2]]
    run.release.set()
    assert [await task for task in tasks] == [n * 10 for n in range(1, 8)]
    assert sorted(run.batches) == [[1], [2], [3, 4], [5, 6], [7]]


async def test_a_failed_batch_fails_its_own_waiters_only() -> None:
    run = Recorder()
    run.release.clear()
    run.fail_on = 2
    coalescer = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(1))
    await _settle()
    doomed = [asyncio.create_task(coalescer.submit(n)) for n in (2, 3)]
    await _settle()
    run.release.set()
    assert await first == 10
    for task in doomed:
        with pytest.raises(ValueError, match="refused 2"):
            await task
    # The coalescer goes on after a failure.
    assert await coalescer.submit(5) == 50


async def test_a_batch_that_answers_too_few_fails_rather_than_misplace_answers() -> None:
    run = Recorder()
    run.short = True
    coalescer = Coalescer(run)
    with pytest.raises(RuntimeError, match="0 answers to 1 requests"):
        await coalescer.submit(1)


async def test_a_cancelled_waiter_leaves_the_others_their_answers() -> None:
    run = Recorder()
    run.release.clear()
    coalescer = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(1))
    await _settle()
    gone = asyncio.create_task(coalescer.submit(2))
    kept = asyncio.create_task(coalescer.submit(3))
    await _settle()
    gone.cancel()
    run.release.set()
    assert await first == 10
    assert await kept == 30
    assert gone.cancelled()
    # The cancelled request still ran with its batch: the caller must tolerate that.
    assert run.batches == [[1], [2, 3]]


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Recorder(), max_batch=0)
