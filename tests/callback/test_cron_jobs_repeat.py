"""Every cron job of the worker runs again and again in one process.

arq hands each run of a job a fresh copy of `ctx`: anything a job keeps there is gone by its
next run. Metrics kept that way were registered a second time and refused, so the at-risk
check and the recording-delete sweep failed on every run after their first (seen in
`make run`). Each cron job here runs three times in one worker, as a day of minutes would.
"""

from __future__ import annotations

from typing import Any

from arq.connections import create_pool

from services.callback.settings import CallbackSettings
from services.callback.worker import close_worker, create_worker


async def test_every_cron_job_runs_three_times_in_one_worker(
    settings: CallbackSettings, clean_db: None
) -> None:
    worker = create_worker(settings, burst=True, poll_delay=0, handle_signals=False)
    pool = await create_pool(worker.redis_settings, default_queue_name=worker.queue_name)
    worker.ctx["redis"] = pool
    assert worker.on_startup is not None
    await worker.on_startup(worker.ctx)
    try:
        assert worker.cron_jobs
        for cron in worker.cron_jobs:
            for _ in range(3):
                ctx: dict[str, Any] = {**worker.ctx, "job_id": cron.name, "job_try": 1}
                await cron.coroutine(ctx)
    finally:
        worker._pool = pool
        await close_worker(worker)
