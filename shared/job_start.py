"""arq's worker, starting the jobs one poll found in one round trip.

`arq.Worker.start_jobs` takes four round trips for each job it starts: `WATCH` the job's
in-progress key, `EXISTS` it, `ZSCORE` the job in the queue, then `MULTI`/`PSETEX`/`EXEC`, the
watch making the check and the mark atomic. A Lua script is atomic by itself, so the same check
(not in progress, still queued, due) and the same mark (the in-progress key, for arq's
`in_progress_timeout_s`) are one `EVAL`, and the jobs of one poll go in one pipeline (as many
as there are free slots; then more as slots free up, within the poll's delay). The rest
is arq's own: reading the job, running it, retrying and finishing it, and the slots
(`job_counter` and the semaphore) kept as `start_jobs` keeps them.

Written against arq 0.28 (pinned by the lock files): tests/shared/test_job_start.py holds what
this start writes, and which jobs it refuses, equal to arq's own on a real Redis.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
from typing import Any

from arq import Worker
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms

# KEYS: the in-progress key, the queue. ARGV: the job id, now (ms), the mark's expiry (ms).
# The job's score, or 0 when another worker has it, it is done, or it is not due (re-enqueued
# with a delay since the poll read it): arq's three reasons to skip a job.
_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
    return 0
end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


class LeanWorker(Worker):
    """`arq.Worker` whose `start_jobs` is one `EVAL` a job, one pipeline for as many jobs as
    there are free slots."""

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        waiting = [job_id.decode() for job_id in job_ids]
        while waiting:
            free = self.max_jobs - self.job_counter
            if free <= 0:
                # arq's start spends four round trips a job, in which jobs finish and free
                # their slots; one that spends one waits for a slot instead, up to a poll's
                # delay, or a poll would start at most `max_jobs` jobs. What is left is read
                # again by the next poll.
                if not await self._slot_freed():
                    return
                continue
            batch, waiting = waiting[:free], waiting[free:]
            await self._start_batch(batch)

    async def _slot_freed(self) -> bool:
        running = [task for task in self.tasks.values() if not task.done()]
        if not running:
            return self.job_counter < self.max_jobs
        await asyncio.wait(running, timeout=self.poll_delay_s, return_when=FIRST_COMPLETED)
        # A task's own callbacks (the slot's release among them) run before `wait` resumes.
        return self.job_counter < self.max_jobs

    async def _start_batch(self, job_ids: list[str]) -> None:
        # A slot for each job, as arq's loop takes them; the semaphore has a permit more than
        # `max_jobs`, so below `max_jobs` the acquire never waits.
        for _ in job_ids:
            await self.sem.acquire()
            self.job_counter += 1
        try:
            scores = await self._start(job_ids)
        except BaseException:
            for _ in job_ids:
                self._release_sem_dec_counter_on_complete()
            raise
        for job_id, score in zip(job_ids, scores, strict=True):
            if not score:
                # Already running elsewhere, finished, or deferred again: as arq, skip it.
                self._release_sem_dec_counter_on_complete()
                continue
            task = self.loop.create_task(self.run_job(job_id, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _start(self, job_ids: list[str]) -> list[Any]:
        """Mark each job in progress if it may start; its score, or 0 (one round trip)."""
        now = timestamp_ms()
        expiry = int(self.in_progress_timeout_s * 1000)
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                keys = [in_progress_key_prefix + job_id, self.queue_name]
                args: list[Any] = [job_id, now, expiry]
                pipe.eval(_START, len(keys), *keys, *args)
            answers: list[Any] = await pipe.execute()
        return answers
