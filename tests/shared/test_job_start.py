"""`shared.job_start.LeanWorker` against arq's own `Worker`, on a real Redis: the same jobs
started and skipped from the same queue, the same in-progress mark while a job runs, and the
same slots taken when a poll finds more jobs than the worker has room for."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import Worker, func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix

from services.callback.worker import close_worker
from shared.job_enqueue import JobSpec, enqueue_jobs
from shared.job_start import LeanWorker
from shared.jobs import job_deserializer, job_serializer

WORKERS = [Worker, LeanWorker]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        default_queue_name=f"ringback:test:start:{secrets.token_hex(4)}",
    )
    yield pool
    await pool.delete(pool.default_queue_name)
    await pool.aclose()


class _Ran:
    """What the jobs saw of themselves: each one's argument and its in-progress mark's TTL."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self.marks: dict[str, int] = {}
        self.release = asyncio.Event()

    async def job(self, ctx: dict[Any, Any], name: str, **kwargs: Any) -> None:
        self.marks[name] = await self.redis.pttl(in_progress_key_prefix + ctx["job_id"])
        await self.release.wait()


def _worker(kind: type[Worker], redis: ArqRedis, ran: _Ran, *, max_jobs: int = 10) -> Worker:
    return kind(
        functions=[func(ran.job, name="job", timeout=30)],
        redis_pool=redis,
        queue_name=redis.default_queue_name,
        max_jobs=max_jobs,
        handle_signals=False,
        keep_result=0,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )


async def _poll(worker: Worker, redis: ArqRedis, ran: _Ran) -> dict[str, int]:
    """One poll's start (what `_poll_iteration` hands `start_jobs`), then the jobs it started
    run to their first step; returns what they saw."""
    ids = await redis.zrangebyscore(redis.default_queue_name, min=float("-inf"), max="+inf")
    await worker.start_jobs(ids)
    for _ in range(100):
        if len(ran.marks) == len(worker.tasks):
            break
        await asyncio.sleep(0.01)
    return dict(ran.marks)


async def _finish(worker: Worker, ran: _Ran) -> None:
    ran.release.set()
    await asyncio.gather(*worker.tasks.values())
    await close_worker(worker)


def _job(name: str, at: datetime | None = None) -> JobSpec:
    return JobSpec("job", f"{name}:{secrets.token_hex(4)}", (name,), defer_until=at)


@pytest.mark.parametrize("kind", WORKERS, ids=lambda k: k.__name__)
async def test_due_jobs_start_and_the_others_are_skipped(
    redis: ArqRedis, kind: type[Worker]
) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    due, running, deferred = _job("due"), _job("running"), _job("deferred", later)
    assert await enqueue_jobs(redis, [due, running, deferred]) == [True, True, True]
    # Another worker has `running`; `gone` was read by the poll but finished meanwhile.
    await redis.psetex(in_progress_key_prefix + running.job_id, 60_000, b"1")
    ran = _Ran(redis)
    worker = _worker(kind, redis, ran)

    await worker.start_jobs([due.job_id.encode(), b"gone:1234"])
    seen = await _poll(worker, redis, ran)
    try:
        assert set(seen) == {"due"}
        assert set(worker.tasks) == {due.job_id}
        # The mark lasts arq's in-progress timeout: the job's timeout and 10 s.
        assert 30_000 < seen["due"] <= 40_000
        assert worker.job_counter == 1
    finally:
        await _finish(worker, ran)
    assert worker.job_counter == 0
    assert await redis.exists(in_progress_key_prefix + due.job_id) == 0


@pytest.mark.parametrize("kind", WORKERS, ids=lambda k: k.__name__)
async def test_a_poll_starts_no_more_jobs_than_the_worker_has_slots(
    redis: ArqRedis, kind: type[Worker]
) -> None:
    jobs = [_job(f"n{i}") for i in range(5)]
    assert await enqueue_jobs(redis, jobs) == [True] * 5
    ran = _Ran(redis)
    worker = _worker(kind, redis, ran, max_jobs=2)

    seen = await _poll(worker, redis, ran)
    try:
        assert len(seen) == 2
        assert worker.job_counter == 2
        # A second poll while both run starts nothing.
        assert len(await _poll(worker, redis, ran)) == 2
    finally:
        await _finish(worker, ran)
    # Those left are still queued, for the next poll.
    assert await redis.zcard(redis.default_queue_name) == 3


async def test_two_lean_workers_never_start_the_same_job(redis: ArqRedis) -> None:
    jobs = [_job(f"n{i}") for i in range(20)]
    assert await enqueue_jobs(redis, jobs) == [True] * 20
    ran = [_Ran(redis), _Ran(redis)]
    workers = [_worker(LeanWorker, redis, r, max_jobs=50) for r in ran]

    await asyncio.gather(*(_poll(w, redis, r) for w, r in zip(workers, ran, strict=True)))
    try:
        started = [set(w.tasks) for w in workers]
        assert not started[0] & started[1]
        assert len(started[0] | started[1]) == 20
    finally:
        for worker, r in zip(workers, ran, strict=True):
            await _finish(worker, r)


async def test_a_poll_keeps_starting_jobs_as_slots_free_up(redis: ArqRedis) -> None:
    """Started in one round trip, a poll's jobs would stop at `max_jobs` a poll (a backlog at
    `max_jobs` per poll delay); the start waits for a slot instead, as arq's slower start
    finds one."""
    jobs = [_job(f"n{i}") for i in range(6)]
    assert await enqueue_jobs(redis, jobs) == [True] * 6
    ran = _Ran(redis)
    ran.release.set()  # every job ends at once
    worker = _worker(LeanWorker, redis, ran, max_jobs=2)

    ids = await redis.zrangebyscore(redis.default_queue_name, min=float("-inf"), max="+inf")
    await worker.start_jobs(ids)
    try:
        assert len(worker.tasks) == 6
    finally:
        await _finish(worker, ran)
    assert set(ran.marks) == {f"n{i}" for i in range(6)}
