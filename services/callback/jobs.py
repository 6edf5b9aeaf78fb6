"""The arq jobs callback enqueues: their names and deduplicating job ids, ids only as arguments.

Each job also carries the enqueuer's `traceparent` (`shared.jobs`), so it continues its trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from arq.connections import ArqRedis

from shared.job_enqueue import JobSpec, enqueue_jobs
from shared.tracing import current_traceparent

SEND_NOTIFICATION = "send_notification"
SWEEP_NOTIFICATIONS = "sweep_notifications"
BOOK_AND_CONFIRM = "book_and_confirm"
EXPIRE_CALLBACKS = "expire_callbacks"
RELEASE_LEASES = "release_leases"
PLACE_DIAL = "place_dial"
FINALIZE_ATTEMPT = "finalize_attempt"
SWEEP_DIALS = "sweep_dials"


def notification_job_id(notification_id: str) -> str:
    """One job id per notification: arq refuses a second copy while one is queued or running."""
    return f"notify:{notification_id}"


def book_job_id(callback_id: str) -> str:
    return f"book:{callback_id}"


def dial_job_id(dial_id: str) -> str:
    return f"dial:{dial_id}"


def finalize_job_id(attempt_id: str) -> str:
    return f"finalize:{attempt_id}"


class DialQueue(Protocol):
    async def enqueue_dial(self, dial_id: str) -> bool: ...

    async def enqueue_finalize(self, attempt_id: str, at: datetime) -> bool: ...


class NotificationQueue(Protocol):
    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int: ...

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool: ...

    async def enqueue_booking(self, callback_id: str) -> bool: ...


class ArqNotificationQueue:
    """Enqueues callback's jobs on the configured arq queue, each in one round trip
    (`shared.job_enqueue`); ids that are queued or running already are refused, as arq does."""

    def __init__(self, redis: ArqRedis, *, queue_name: str | None = None) -> None:
        self._redis = redis
        self._queue_name = queue_name

    async def _enqueue(self, jobs: list[JobSpec]) -> list[bool]:
        return await enqueue_jobs(self._redis, jobs, queue_name=self._queue_name)

    def _job(
        self, function: str, job_id: str, argument: str, at: datetime | None = None
    ) -> JobSpec:
        return JobSpec(
            function,
            job_id,
            args=(argument,),
            kwargs={"traceparent": current_traceparent()},
            defer_until=at,
        )

    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int:
        """Enqueue each id; returns how many were new (the rest were already queued)."""
        jobs = [self._job(SEND_NOTIFICATION, notification_job_id(i), i) for i in notification_ids]
        return sum(await self._enqueue(jobs))

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        """A send deferred until `at` (a reminder); the sweeper is the safety net."""
        job = self._job(
            SEND_NOTIFICATION, notification_job_id(notification_id), notification_id, at
        )
        return (await self._enqueue([job]))[0]

    async def enqueue_booking(self, callback_id: str) -> bool:
        """`book_and_confirm(callback_id)`: book an ASAP callback, then confirm it."""
        return (
            await self._enqueue(
                [self._job(BOOK_AND_CONFIRM, book_job_id(callback_id), callback_id)]
            )
        )[0]

    async def enqueue_dial(self, dial_id: str) -> bool:
        """`place_dial(dial_id)`: ask the phone system to ring the agent, once."""
        return (await self._enqueue([self._job(PLACE_DIAL, dial_job_id(dial_id), dial_id)]))[0]

    async def enqueue_finalize(self, attempt_id: str, at: datetime) -> bool:
        """`finalize_attempt(attempt_id)` at the end of the wrap-up time (the sweep is the net)."""
        job = self._job(FINALIZE_ATTEMPT, finalize_job_id(attempt_id), attempt_id, at)
        return (await self._enqueue([job]))[0]
