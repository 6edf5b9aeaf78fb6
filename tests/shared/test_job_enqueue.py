"""`shared.job_enqueue` against arq's own `enqueue_job`, on a real Redis: the same bytes, score
and expiry for the same job, the same refusal of an id already there, and a real arq worker
running what it enqueued."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix, result_key_prefix
from arq.utils import to_unix_ms

from shared.job_enqueue import JobSpec, enqueue_jobs
from shared.jobs import job_deserializer, job_serializer
from tests.support.burst import run_burst


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        default_queue_name=f"ringback:test:enqueue:{secrets.token_hex(4)}",
    )
    yield pool
    await pool.delete(pool.default_queue_name)
    await pool.aclose()


def _id() -> str:
    return f"job:{secrets.token_hex(6)}"


async def _stored(redis: ArqRedis, job_id: str) -> tuple[dict[str, Any], float, int]:
    """The job as arq's worker reads it (less its enqueue time), its score and its expiry."""
    data = job_deserializer(await redis.get(job_key_prefix + job_id))
    score = await redis.zscore(redis.default_queue_name, job_id)
    expiry = await redis.pttl(job_key_prefix + job_id)
    assert score is not None
    return {k: v for k, v in data.items() if k != "et"}, score, expiry


@pytest.mark.parametrize("deferred", [False, True])
async def test_it_writes_what_arq_writes(redis: ArqRedis, deferred: bool) -> None:
    at = datetime.now(UTC) + timedelta(minutes=5) if deferred else None
    ours, theirs = _id(), _id()
    kwargs: dict[str, Any] = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}

    assert await enqueue_jobs(redis, [JobSpec("book", ours, ("c-1",), kwargs, at)]) == [True]
    assert await redis.enqueue_job("book", "c-1", _job_id=theirs, _defer_until=at, **kwargs)

    our_job, our_score, our_expiry = await _stored(redis, ours)
    their_job, their_score, their_expiry = await _stored(redis, theirs)
    assert our_job == their_job == {"t": None, "f": "book", "a": ["c-1"], "k": kwargs}
    # Enqueued a moment apart: the same score and expiry, give or take that moment.
    assert abs(our_score - their_score) < 1000
    assert abs(our_expiry - their_expiry) < 1000
    if at is not None:
        assert our_score == their_score == to_unix_ms(at)


async def test_an_id_already_there_is_refused_both_ways(redis: ArqRedis) -> None:
    by_us, by_arq, finished = _id(), _id(), _id()
    assert await enqueue_jobs(redis, [JobSpec("f", by_us)]) == [True]
    assert await redis.enqueue_job("f", _job_id=by_arq) is not None
    await redis.set(result_key_prefix + finished, b"{}")  # a kept result, as arq's

    refused = await enqueue_jobs(redis, [JobSpec("f", by_arq), JobSpec("f", finished)])
    assert refused == [False, False]
    assert await redis.enqueue_job("f", _job_id=by_us) is None
    assert await enqueue_jobs(redis, [JobSpec("f", by_us), JobSpec("f", _id())]) == [False, True]
    assert await redis.zcard(redis.default_queue_name) == 3


async def test_arqs_worker_runs_what_it_enqueued(redis: ArqRedis) -> None:
    ran: list[tuple[str, str | None]] = []

    async def job(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> None:
        ran.append((args[0], kwargs["traceparent"]))

    specs = [JobSpec("job", _id(), (f"n-{i}",), {"traceparent": None}) for i in range(3)]
    assert await enqueue_jobs(redis, specs) == [True, True, True]
    worker = await run_burst(redis, redis.default_queue_name, [func(job, name="job")])

    assert sorted(ran) == [("n-0", None), ("n-1", None), ("n-2", None)]
    assert worker.jobs_complete == 3
