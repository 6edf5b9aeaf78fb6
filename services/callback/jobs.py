"""The arq jobs callback enqueues: their names and deduplicating job ids, ids only as arguments.

Each job also carries the enqueuer's `traceparent` (`shared.jobs`), so it continues its trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from arq.connections import ArqRedis

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
    """Enqueues callback's jobs on the configured arq queue."""

    def __init__(self, redis: ArqRedis, *, queue_name: str | None = None) -> None:
        self._redis = redis
        self._queue_name = queue_name

    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int:
        """Enqueue each id; returns how many were new (the rest were already queued)."""
        enqueued = 0
        for notification_id in notification_ids:
            job = await self._redis.enqueue_job(
                SEND_NOTIFICATION,
                notification_id,
                _job_id=notification_job_id(notification_id),
                _queue_name=self._queue_name,
                traceparent=current_traceparent(),
            )
            enqueued += job is not None
        return enqueued

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        """A send deferred until `at` (a reminder); the sweeper is the safety net."""
        job = await self._redis.enqueue_job(
            SEND_NOTIFICATION,
            notification_id,
            _job_id=notification_job_id(notification_id),
            _queue_name=self._queue_name,
            _defer_until=at,
            traceparent=current_traceparent(),
        )
        return job is not None

    async def enqueue_booking(self, callback_id: str) -> bool:
        """`book_and_confirm(callback_id)`: book an ASAP callback, then confirm it."""
        job = await self._redis.enqueue_job(
            BOOK_AND_CONFIRM,
            callback_id,
            _job_id=book_job_id(callback_id),
            _queue_name=self._queue_name,
            traceparent=current_traceparent(),
        )
        return job is not None

    async def enqueue_dial(self, dial_id: str) -> bool:
        """`place_dial(dial_id)`: ask the phone system to ring the agent, once."""
        job = await self._redis.enqueue_job(
            PLACE_DIAL,
            dial_id,
            _job_id=dial_job_id(dial_id),
            _queue_name=self._queue_name,
            traceparent=current_traceparent(),
        )
        return job is not None

    async def enqueue_finalize(self, attempt_id: str, at: datetime) -> bool:
        """`finalize_attempt(attempt_id)` at the end of the wrap-up time (the sweep is the net)."""
        job = await self._redis.enqueue_job(
            FINALIZE_ATTEMPT,
            attempt_id,
            _job_id=finalize_job_id(attempt_id),
            _queue_name=self._queue_name,
            _defer_until=at,
            traceparent=current_traceparent(),
        )
        return job is not None
