"""arq's enqueue in one round trip: the same keys, bytes and refusal of a duplicate job id.

`ArqRedis.enqueue_job` takes three round trips (`WATCH` the job key, `EXISTS` it and the
result key, then `MULTI`/`PSETEX`/`ZADD`/`EXEC`), the watch making the check and the write
atomic. A Lua script is atomic by itself, so the same check and write are one `EVAL` (the
script's text each time: Redis keeps it compiled, and no `NOSCRIPT` after a restart can fail
a send); jobs enqueued together go in one pipeline. arq's worker cannot tell the
difference: tests/shared/test_job_enqueue.py holds what both write equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms

# KEYS: the job key, the result key, the queue. ARGV: expiry (ms), the job, its id, its score.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
    return 0
end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job as `enqueue_job(function, *args, _job_id=, _defer_until=, **kwargs)` takes it."""

    function: str
    job_id: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    defer_until: datetime | None = None


async def enqueue_jobs(
    redis: ArqRedis, jobs: Sequence[JobSpec], *, queue_name: str | None = None
) -> list[bool]:
    """Enqueue each job unless its id is queued, running or has a result (as arq refuses it);
    True for each that was new. One round trip for all of them."""
    if not jobs:
        return []
    queue = queue_name or redis.default_queue_name
    now = timestamp_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for job in jobs:
            score = to_unix_ms(job.defer_until) if job.defer_until is not None else now
            expires = score - now + redis.expires_extra_ms
            data = serialize_job(
                job.function, job.args, job.kwargs, None, now, serializer=redis.job_serializer
            )
            keys = [job_key_prefix + job.job_id, result_key_prefix + job.job_id, queue]
            args: list[Any] = [expires, data, job.job_id, score]
            pipe.eval(_ENQUEUE, len(keys), *keys, *args)
        answers = await pipe.execute()
    return [bool(answer) for answer in answers]
