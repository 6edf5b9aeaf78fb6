"""The live stream: one LISTEN connection per instance fanning new events out to SSE clients.

Every stored event is announced with `NOTIFY ringback_history_events, '<seq>:<customer id>'`
at commit, by whichever instance stored it. Each instance keeps one asyncpg connection
listening and wakes the streams following that customer. A notice is only a wake-up: the
stream reads the events themselves from the database (`seq` greater than the last one it
sent), so a stream never loses an event to a full queue, a dropped notice or a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history import repository
from services.history.service import EVENTS_CHANNEL, event_out, live_customer
from services.history.settings import HistorySettings
from shared.backoff import backoff_seconds
from shared.db import asyncpg_dsn
from shared.errors import NotFound
from shared.eventloop import first_set
from shared.service_app import Extension

log = structlog.get_logger("ringback.history.stream")

PAGE = 200


@dataclass(eq=False)
class Subscription:
    """One stream's mailbox: the customers it follows and a bounded queue of wake-ups."""

    customer_ids: set[str]
    queue: asyncio.Queue[int] = field(default_factory=lambda: asyncio.Queue(64))
    # Set when a wake-up did not fit: the stream reads from the database either way.
    overflowed: bool = False

    def wake(self, seq: int) -> None:
        try:
            self.queue.put_nowait(seq)
        except asyncio.QueueFull:
            self.overflowed = True


class Broadcaster:
    """Routes NOTIFY payloads to the subscriptions following their customer."""

    def __init__(self, *, queue_size: int = 64) -> None:
        self.queue_size = queue_size
        self._by_customer: dict[str, set[Subscription]] = {}
        # False while there is no LISTEN connection: streams then poll the database.
        self.listening = False

    def subscribe(self, customer_id: str) -> Subscription:
        sub = Subscription({customer_id}, asyncio.Queue(self.queue_size))
        self._by_customer.setdefault(customer_id, set()).add(sub)
        return sub

    def follow(self, sub: Subscription, customer_id: str) -> None:
        """Also wake `sub` for `customer_id` (the survivor of a merge it was following)."""
        sub.customer_ids.add(customer_id)
        self._by_customer.setdefault(customer_id, set()).add(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        for customer_id in sub.customer_ids:
            subs = self._by_customer.get(customer_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_customer[customer_id]

    @property
    def subscriptions(self) -> int:
        return len({sub for subs in self._by_customer.values() for sub in subs})

    def dispatch(self, payload: str) -> None:
        """Handle one NOTIFY payload (`<seq>:<customer id>`); anything else is ignored."""
        seq_text, _, customer_id = payload.partition(":")
        if not seq_text.isdigit():
            return
        for sub in self._by_customer.get(customer_id, ()):
            sub.wake(int(seq_text))

    def wake_all(self) -> None:
        """Wake every stream (after a gap in listening: they catch up from the database)."""
        for subs in self._by_customer.values():
            for sub in subs:
                sub.wake(0)

    async def run(self, dsn: str, stop: asyncio.Event) -> None:
        """Keep one LISTEN connection open until `stop`, reconnecting with backoff."""
        attempt = 0
        while not stop.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    dsn, server_settings={"application_name": "ringback.history.listen"}
                )
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(EVENTS_CHANNEL, self._on_notify)
                self.listening = True
                attempt = 0
                self.wake_all()  # whatever was stored while we were not listening
                await first_set(lost, stop)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("history.stream.listen_failed", error=type(exc).__name__)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            if stop.is_set():
                break
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff_seconds(attempt, cap=10))
        self.wake_all()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.dispatch(payload)


def broadcaster_extension(settings: HistorySettings) -> Extension:
    """The app extension running the instance's LISTEN connection for the live stream."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        broadcaster = Broadcaster(queue_size=settings.history_stream_queue_size)
        app.state.broadcaster = broadcaster
        stop = asyncio.Event()
        dsn = asyncpg_dsn(settings.direct_database_url_for("history"))
        task = asyncio.create_task(broadcaster.run(dsn, stop), name="history.stream.listen")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return extension


def sse(event: dict[str, Any], *, seq: int, type_: str) -> bytes:
    """One Server-Sent Event: its id is the event's `seq`, its name the event type."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {seq}\nevent: {type_}\ndata: {data}\n\n".encode()


KEEP_ALIVE = b": keep-alive\n\n"


async def stream_events(
    *,
    sessions: async_sessionmaker[AsyncSession],
    broadcaster: Broadcaster,
    settings: HistorySettings,
    customer_id: str,
    after_seq: int,
    still_admitted: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """The bytes of one SSE stream: replay from the database past `after_seq`, then live.

    Subscribed before the first read, so nothing stored between the replay and the first
    wake-up is missed. Per customer, `seq` order is commit order (storing an event holds the
    customer's row lock until commit), so "greater than the last seq sent" skips nothing.

    The key that opened the stream is asked again once per key-cache period; a revoked key's
    stream ends then, rather than living as long as the connection.
    """
    sub = broadcaster.subscribe(customer_id)
    last = after_seq
    following = customer_id
    recheck_every = max(1.0, settings.api_key_cache_seconds)
    recheck_at = time.monotonic() + recheck_every
    try:
        # The stream's starting point as its last event id: a client reconnecting before any
        # event came resumes from here (Last-Event-ID) instead of missing what was stored
        # while it was away.
        retry_ms = int(settings.history_stream_poll_seconds * 1000)
        yield f"retry: {retry_ms}\nid: {after_seq}\n\n".encode()
        while True:
            # Drain wake-ups first: the read below covers them all.
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.overflowed = False
            if time.monotonic() >= recheck_at:
                if not await still_admitted():
                    return
                recheck_at = time.monotonic() + recheck_every
            async with sessions() as session:
                try:
                    customer = await live_customer(session=session, customer_id=following)
                except NotFound:  # purged by retention while we streamed: nothing more to say
                    return
                if customer.id != following:  # merged away: follow the survivor
                    following = customer.id
                    broadcaster.follow(sub, following)
                events = await repository.events_after(
                    session, customer_id=following, after_seq=last, limit=PAGE
                )
            for event in events:
                out = event_out(event).model_dump(mode="json")
                yield sse(out, seq=event.seq, type_=event.type)
                last = event.seq
            if len(events) == PAGE:
                continue
            timeout = settings.history_stream_heartbeat_seconds
            if not broadcaster.listening:
                timeout = min(timeout, settings.history_stream_poll_seconds)
            timeout = max(0.0, min(timeout, recheck_at - time.monotonic()))
            try:
                await asyncio.wait_for(sub.queue.get(), timeout=timeout)
            except TimeoutError:
                yield KEEP_ALIVE
    finally:
        broadcaster.unsubscribe(sub)
