"""The arq jobs callback enqueues: their names and deduplicating job ids, ids only as arguments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from arq.connections import ArqRedis

SEND_NOTIFICATION = "send_notification"
SWEEP_NOTIFICATIONS = "sweep_notifications"


def notification_job_id(notification_id: str) -> str:
    """One job id per notification: arq refuses a second copy while one is queued or running."""
    return f"notify:{notification_id}"


class NotificationQueue(Protocol):
    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int: ...


class ArqNotificationQueue:
    """Enqueues `send_notification(notification_id)` jobs on the configured arq queue."""

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
            )
            enqueued += job is not None
        return enqueued
