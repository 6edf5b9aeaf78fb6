"""A real arq worker in burst mode over a test's own queue: every job there, then stop."""

from __future__ import annotations

from arq import Worker
from arq.connections import ArqRedis
from arq.worker import Function

from services.callback.worker import close_worker
from shared.jobs import job_deserializer, job_serializer


async def run_burst(redis: ArqRedis, queue_name: str, functions: list[Function]) -> Worker:
    """Run `functions` for the jobs on `queue_name` with our JSON jobs, as the worker does."""
    worker = Worker(
        functions=functions,
        redis_pool=redis,
        queue_name=queue_name,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        keep_result=0,
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
    )
    try:
        await worker.main()
    finally:
        await close_worker(worker)
    return worker
