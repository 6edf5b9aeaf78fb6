"""All of callback's SQL."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services.callback.models import (
    OPEN_STATUSES,
    UNFINISHED_NOTIFICATION_STATUSES,
    Callback,
    CallbackRequest,
    Notification,
)


def _lock_key(namespace: str, value: str) -> int:
    """A signed 64-bit advisory-lock key for `value` within `namespace`."""
    digest = hashlib.sha256(f"ringback.callback.{namespace}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def lock(session: AsyncSession, namespace: str, value: str) -> None:
    """Serialise transactions on one value (a number, a request id) until commit."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(namespace, value)}
    )


async def get_request(session: AsyncSession, request_id: str) -> CallbackRequest | None:
    return await session.get(CallbackRequest, request_id)


async def find_open_for_phone(session: AsyncSession, phone: str) -> Callback | None:
    """The open callback of an E.164 number, locked for update."""
    return await session.scalar(
        select(Callback)
        .where(Callback.phone == phone, Callback.status.in_(OPEN_STATUSES))
        .with_for_update()
    )


async def get_callback(
    session: AsyncSession, callback_id: str, *, with_notifications: bool = False
) -> Callback | None:
    query = select(Callback).where(Callback.id == callback_id)
    if with_notifications:
        query = query.options(selectinload(Callback.notifications))
    return await session.scalar(query)


async def list_callbacks(
    session: AsyncSession,
    *,
    status: str | None,
    phone: str | None,
    due_before: datetime | None,
    after_id: str | None,
    limit: int,
) -> Sequence[Callback]:
    """Newest first (ids are UUIDv7, so id order is creation order), one page past `after_id`."""
    query = select(Callback)
    if status is not None:
        query = query.where(Callback.status == status)
    if phone is not None:
        query = query.where(Callback.phone == phone)
    if due_before is not None:
        query = query.where(Callback.due_at < due_before)
    if after_id is not None:
        query = query.where(Callback.id < after_id)
    return (await session.scalars(query.order_by(Callback.id.desc()).limit(limit))).all()


async def lock_notification(session: AsyncSession, notification_id: str) -> Notification | None:
    """The notification row, locked until commit, so two jobs never both claim it."""
    return await session.scalar(
        select(Notification).where(Notification.id == notification_id).with_for_update()
    )


async def due_notifications(session: AsyncSession, *, now: datetime, limit: int) -> Sequence[str]:
    """Ids of notifications whose send (or expired send lease) is due."""
    return (
        await session.scalars(
            select(Notification.id)
            .where(
                Notification.status.in_(UNFINISHED_NOTIFICATION_STATUSES),
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at)
            .limit(limit)
        )
    ).all()


async def notifications_for(session: AsyncSession, callback_id: str) -> Sequence[Notification]:
    return (
        await session.scalars(
            select(Notification)
            .where(Notification.callback_id == callback_id)
            .order_by(Notification.id)
        )
    ).all()
