"""`ringback outbox list|replay`: the services' outbox rows as an operator sees them, and dead
ones given back to the relay.

A row is pending until its peer acknowledges it (delivered), or until the peer refuses it for
good (a 4xx other than 408/425/429): then the relay parks it as dead and stops trying. Replaying
puts a dead row back to pending, due now, and wakes the relays, which deliver it as any other
(receivers store what a row carries once, by its own id, so a row that did arrive changes
nothing).

Straight in the database with each service's own model, like `ringback api-key`. Payloads hold
personal data: the database compares them (an erased one is not replayed), but they are never
fetched here, let alone printed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import literal

from services.cli.admin import CliFailure, _shorten, _table
from services.cli.devstate import SERVICES, ensure_database_url
from shared.db import create_engine, create_session_factory
from shared.outbox import ERASED_PAYLOAD, OutboxMixin, channel_for
from shared.settings import CommonSettings
from shared.vocabulary import OutboxRowStatus

T = TypeVar("T")


RowStatus = OutboxRowStatus


def outbox_model(service: str) -> type[OutboxMixin]:
    if service == "intake":
        from services.intake.models import IntakeOutbox

        return IntakeOutbox
    if service == "callback":
        from services.callback.models import CallbackOutbox

        return CallbackOutbox
    if service == "history":
        from services.history.models import HistoryOutbox

        return HistoryOutbox
    raise ValueError(f"no such service: {service}")


def status_of(delivered_at: datetime | None, dead_at: datetime | None) -> RowStatus:
    if delivered_at is not None:
        return RowStatus.DELIVERED
    return RowStatus.DEAD if dead_at is not None else RowStatus.PENDING


def _where(model: type[OutboxMixin], status: RowStatus) -> ColumnElement[bool]:
    if status is RowStatus.DELIVERED:
        return model.delivered_at.is_not(None)
    if status is RowStatus.DEAD:
        return and_(model.delivered_at.is_(None), model.dead_at.is_not(None))
    return and_(model.delivered_at.is_(None), model.dead_at.is_(None))


def _withdrawn(model: type[OutboxMixin]) -> ColumnElement[bool]:
    return model.payload == literal(ERASED_PAYLOAD, JSONB)


@contextmanager
def _databases() -> Iterator[dict[str, str]]:
    """Each service's database URL, the embedded one started (and stopped) when none is set."""
    url, server = ensure_database_url()
    try:
        yield CommonSettings(database_url=url).all_database_urls()
    finally:
        if server is not None:
            server.stop()


async def _in_session(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    engine = create_engine(CommonSettings(database_url=url), application_name="ringback.cli")
    try:
        async with create_session_factory(engine)() as session:
            return await work(session)
    finally:
        await engine.dispose()


# --- list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    service: str
    id: int
    destination: str
    path: str
    status: RowStatus
    attempts: int
    last_error: str | None
    created_at: datetime


async def list_rows(
    url: str, service: str, *, statuses: list[RowStatus], limit: int
) -> list[Listed]:
    """The newest `limit` rows of one service's outbox in these statuses (never the payload)."""
    model = outbox_model(service)

    async def work(session: AsyncSession) -> list[Listed]:
        rows = await session.execute(
            select(
                model.id,
                model.destination,
                model.path,
                model.delivered_at,
                model.dead_at,
                model.attempts,
                model.last_error,
                model.created_at,
            )
            .where(*([_any(model, statuses)] if statuses else []))
            .order_by(model.id.desc())
            .limit(limit)
        )
        return [
            Listed(
                service=service,
                id=row.id,
                destination=row.destination,
                path=row.path,
                status=status_of(row.delivered_at, row.dead_at),
                attempts=row.attempts,
                last_error=row.last_error,
                created_at=row.created_at,
            )
            for row in rows
        ]

    return await _in_session(url, work)


def _any(model: type[OutboxMixin], statuses: list[RowStatus]) -> ColumnElement[bool]:
    return or_(*(_where(model, status) for status in statuses))


def cmd_outbox_list(services: list[str], statuses: list[RowStatus], limit: int) -> int:
    with _databases() as urls:
        rows = [
            row
            for service in services
            for row in asyncio.run(
                list_rows(urls[service], service, statuses=statuses, limit=limit)
            )
        ]
    if not rows:
        print("no outbox rows match")
        return 0
    rows.sort(key=lambda row: row.created_at, reverse=True)
    table = [
        [
            str(row.id),
            row.service,
            f"{row.destination} {row.path}",
            row.status,
            str(row.attempts),
            _shorten(readable_error(row.last_error), 70),
            row.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        ]
        for row in rows[:limit]
    ]
    header = ["ID", "SERVICE", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR", "CREATED (UTC)"]
    for line in _table(table, header):
        print(line)
    if len(rows) > limit:
        print(f"(the newest {limit}; --limit shows more)")
    return 0


def readable_error(error: str | None) -> str:
    """The relay's `HTTP 422: {problem}` as `HTTP 422 title: detail`; other errors as they are."""
    if not error:
        return "-"
    status, _, body = error.partition(": ")
    if not status.startswith("HTTP ") or not body.startswith("{"):
        return error
    try:
        problem = json.loads(body)
    except ValueError:
        return error  # cut off at 400 characters, or not JSON after all
    if not isinstance(problem, dict):
        return error
    words = [str(problem[k]) for k in ("title", "detail") if isinstance(problem.get(k), str)]
    return f"{status} {': '.join(words)}" if words else error


# --- replay -----------------------------------------------------------------------------


async def replay_row(url: str, service: str, row_id: int) -> str:
    """Put dead row `row_id` back to pending; what happened, or `CliFailure` saying why not."""
    model = outbox_model(service)

    async def work(session: AsyncSession) -> str:
        row = (
            await session.execute(
                select(model.delivered_at, model.dead_at, _withdrawn(model).label("withdrawn"))
                .where(model.id == row_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            raise CliFailure(f"error: {service}'s outbox has no row {row_id}")
        status = status_of(row.delivered_at, row.dead_at)
        if status is RowStatus.PENDING:
            raise CliFailure(
                f"error: {service} row {row_id} is pending, not dead: the relay is still "
                "delivering it; only dead rows are replayed"
            )
        if status is RowStatus.DELIVERED:
            raise CliFailure(
                f"error: {service} row {row_id} was delivered; only dead rows are replayed"
            )
        if row.withdrawn:
            raise CliFailure(
                f"error: {service} row {row_id} was withdrawn when the person it named was "
                "erased; it is not replayed"
            )
        await _revive(session, model, model.id == row_id)
        await session.commit()
        return f"{service} row {row_id}: pending again; the relay delivers it now"

    return await _in_session(url, work)


async def replay_dead(url: str, service: str) -> tuple[list[int], int]:
    """Put every dead row of one outbox back to pending: their ids, and how many were left
    dead because erasure withdrew them."""
    model = outbox_model(service)

    async def work(session: AsyncSession) -> tuple[list[int], int]:
        dead = _where(model, RowStatus.DEAD)
        revived = await _revive(session, model, and_(dead, ~_withdrawn(model)))
        withdrawn = await session.scalar(
            select(func.count()).select_from(model).where(dead, _withdrawn(model))
        )
        await session.commit()
        return revived, int(withdrawn or 0)

    return await _in_session(url, work)


async def _revive(
    session: AsyncSession, model: type[OutboxMixin], which: ColumnElement[bool]
) -> list[int]:
    """Due now, no longer dead; `last_error` and `attempts` stay, to show what happened.

    An earlier row of a customer holds back their later ones while it is undelivered, so a
    replayed row goes out before anything written after this moment, not in its first place.
    """
    ids = list(
        (
            await session.scalars(
                update(model)
                .where(which)
                .values(dead_at=None, available_at=func.now())
                .returning(model.id)
            )
        ).all()
    )
    if ids:
        # NOTIFY is delivered at commit: the relays wake when the rows are theirs to take.
        notify = text("SELECT pg_notify(:channel, '')")
        await session.execute(notify, {"channel": channel_for(model)})
    return sorted(ids)


def cmd_outbox_replay(services: list[str], row_id: int | None, all_dead: bool) -> int:
    with _databases() as urls:
        if all_dead:
            for service in services:
                ids, withdrawn = asyncio.run(replay_dead(urls[service], service))
                shown = f" ({', '.join(map(str, ids))})" if ids else ""
                print(f"{service}: {_rows(len(ids))} pending again{shown}")
                if withdrawn:
                    print(f"{service}: {_rows(withdrawn)} withdrawn by an erasure stay dead")
            return 0
        assert row_id is not None
        holders = [s for s in services if asyncio.run(_has_row(urls[s], s, row_id))]
        if not holders:
            raise CliFailure(f"error: no outbox row {row_id} in {', '.join(services)}")
        if len(holders) > 1:
            raise CliFailure(
                f"error: row {row_id} is in the outboxes of {' and '.join(holders)}: "
                "say which with --service",
                2,
            )
        print(asyncio.run(replay_row(urls[holders[0]], holders[0], row_id)))
    return 0


def _rows(count: int) -> str:
    return f"{count} dead row{'' if count == 1 else 's'}"


async def _has_row(url: str, service: str, row_id: int) -> bool:
    model = outbox_model(service)

    async def work(session: AsyncSession) -> bool:
        return bool(await session.scalar(select(func.count()).where(model.id == row_id)))

    return await _in_session(url, work)


def chosen(service: str | None) -> list[str]:
    return [service] if service else list(SERVICES)
