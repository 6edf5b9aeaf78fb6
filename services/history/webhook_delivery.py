"""The webhook relay: history's outbox of deliveries, signed and sent to subscribers (DESIGN §12).

It is an `OutboxRelay` (the same wake-on-NOTIFY loop, the same table columns), with a
different way of working a row, because a subscriber is not a peer of ours:

- a row is *claimed* by one autocommitted statement (a lease: `available_at` moves past
  the request's timeout) and sent outside any transaction, so a subscriber that hangs holds no
  lock and no pass: the other endpoints' rows are claimed and sent meanwhile;
- at most `per_endpoint` requests are in flight to one endpoint, and each is cut off after
  `timeout_seconds`; a relay killed mid-request leaves the row to be claimed again when its
  lease ends: at least once, under the same `webhook-id`;
- failures are retried on `RETRY_SCHEDULE_SECONDS` (three days), any non-2xx is a failure,
  redirects are not followed, a 410 turns the endpoint off, and so do five days of failures;
- response bodies are read up to `RESPONSE_READ_LIMIT_BYTES` and never logged or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
import structlog
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Integer,
    Text,
    bindparam,
    cast,
    delete,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.history.models import WebhookDelivery, WebhookEndpoint
from services.history.settings import HistorySettings
from services.history.url_safety import UnsafeUrl, guarded_transport
from services.history.webhook_signing import signature_header
from shared import fast_sql
from shared.db import asyncpg_dsn, utcnow
from shared.http import StatelessClient
from shared.jsonutil import dumps
from shared.outbox import OutboxRelay
from shared.service_app import Extension
from shared.vocabulary import WebhookDisabledReason, WebhookTryResult

log = structlog.get_logger("ringback.history.webhooks")

# The wait after each failed try, Svix's schedule stretched to three days: 5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 10 h, 14 h, 14 h, 16 h; eleven tries over 71.6 hours. Each wait
# is jittered by up to 10% either way so an endpoint's backlog does not return in step.
RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    10 * 3600,
    14 * 3600,
    14 * 3600,
    16 * 3600,
)
MAX_TRIES = len(RETRY_SCHEDULE_SECONDS) + 1
JITTER = 0.1
# An endpoint all of whose tries failed for this long is turned off.
FAILING_DAYS_BEFORE_DISABLE = 5
# How much of a response is read: enough to end the exchange cleanly, never kept.
RESPONSE_READ_LIMIT_BYTES = 4096
# A claimed row is due again this long after its request's timeout, if nobody recorded it.
LEASE_MARGIN_SECONDS = 10.0
# New deliveries are announced here (not on the outbox's own channel, which would wake the
# erasure relay for nothing), the payload naming their endpoints: a relay whose slots for
# those endpoints are all taken need not look (with slow subscribers attached, every
# recorded event would otherwise cost two relay passes that find nothing to claim).
CHANNEL = "ringback_history_webhooks"

# Delivered and dead deliveries older than `history_webhook_keep_days` are deleted, this many
# per statement, looked for this often.
PURGE_BATCH = 1000
PURGE_INTERVAL_SECONDS = 60.0
# How long the old secret signs too after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)


def retry_delay(tries: int) -> float | None:
    """Seconds to wait after the `tries`-th failed try, or None: that was the last."""
    if tries > len(RETRY_SCHEDULE_SECONDS):
        return None
    delay = RETRY_SCHEDULE_SECONDS[max(tries, 1) - 1]
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.sent = Counter(
            "ringback_webhook_deliveries_total",
            "Webhook tries by endpoint and result (`WebhookTryResult`).",
            ["endpoint", "result"],
            registry=registry,
        )
        self.disabled = Counter(
            "ringback_webhook_endpoints_disabled_total",
            "Webhook endpoints turned off by ringback (reason: gone or failing).",
            ["endpoint", "reason"],
            registry=registry,
        )
        self.backlog = Gauge(
            "ringback_webhook_backlog",
            "Webhook deliveries waiting to be sent (due or backing off).",
            registry=registry,
        )
        self.in_flight = Gauge(
            "ringback_webhook_in_flight",
            "Webhook requests in flight in this process.",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one try needs, read when the row was claimed."""

    id: int
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    message_id: str
    body: bytes
    tries: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    result: WebhookTryResult
    error: str | None = None


class _Secrets(Protocol):
    @property
    def secret(self) -> str: ...
    @property
    def previous_secret(self) -> str | None: ...
    @property
    def previous_secret_expires_at(self) -> datetime | None: ...


def signing_secrets(endpoint: _Secrets, now: datetime) -> tuple[str, ...]:
    """The secrets that sign now: the current one, and the previous one while it overlaps."""
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        return (endpoint.secret, endpoint.previous_secret)
    return (endpoint.secret,)


def _pending() -> Any:
    return WebhookDelivery.delivered_at.is_(None) & WebhookDelivery.dead_at.is_(None)


_DONE = (
    func.unnest(
        bindparam("delivery_ids", type_=ARRAY(BigInteger)),
        bindparam("status_codes", type_=ARRAY(Integer)),
    )
    .table_valued("id", "status_code")
    .render_derived(name="done")
)
_DELIVERED_ROWS = (
    update(WebhookDelivery)
    .where(WebhookDelivery.id == _DONE.c.id)
    .values(delivered_at=bindparam("now"), last_status_code=_DONE.c.status_code, last_error=None)
    .returning(WebhookDelivery.endpoint_id)
    .cte("delivered")
)
# Delivered tries, and their endpoints no longer failing (touched only if they were), in one
# autocommitted statement for as many as finished together: the common case, one round trip
# where a transaction took four.
_DELIVERED = (
    update(WebhookEndpoint)
    .where(
        WebhookEndpoint.id.in_(select(_DELIVERED_ROWS.c.endpoint_id)),
        WebhookEndpoint.failing_since.is_not(None),
    )
    .values(failing_since=None)
    .add_cte(_DELIVERED_ROWS)
)
_FAST_DELIVERED = fast_sql.Statement.of(_DELIVERED)


def _claim() -> Any:
    """Claim what is due, in one statement: the rows leased out and what their tries need.

    Per enabled endpoint, its first due rows up to its free slots (`per_endpoint` less the
    `busy_counts` this relay has in flight to the `busy_endpoints`), `room` in all, in due
    order; rows another relay holds are skipped, not waited for. Each claimed row's try is
    counted (`attempts` comes back counted) and its lease (`until`) taken in the same
    statement, autocommitted: one round trip where a transaction of a select and an update
    took four, and an empty pass three (bench/RESULTS.md, "fourteenth").

    Read off the partial index of pending rows by (endpoint, due time): a pass costs the same
    however long the backlog, and a big backlog at one endpoint never hides another's rows.
    Endpoints' secrets come last, in `_EndpointSecrets`' order."""
    row = WebhookDelivery
    busy = (
        func.unnest(
            bindparam("busy_endpoints", type_=ARRAY(Text)),
            bindparam("busy_counts", type_=ARRAY(Integer)),
        )
        .table_valued("endpoint_id", "n")
        .render_derived(name="in_flight")
    )
    in_flight = func.coalesce(
        select(busy.c.n).where(busy.c.endpoint_id == WebhookEndpoint.id).scalar_subquery(), 0
    )
    firsts = (
        select(row.id, func.row_number().over(order_by=row.available_at).label("place"))
        .where(row.endpoint_id == WebhookEndpoint.id, _pending(), row.available_at <= func.now())
        .order_by(row.available_at)
        .limit(bindparam("per_endpoint", type_=Integer))
        .lateral("firsts")
    )
    due = (
        select(firsts.c.id)
        .select_from(WebhookEndpoint)
        .join(firsts, true())
        .where(
            WebhookEndpoint.enabled,
            firsts.c.place <= bindparam("per_endpoint", type_=Integer) - in_flight,
        )
        .limit(bindparam("room", type_=Integer))
        .subquery("due")
    )
    # The ids as one array, computed once: as `id IN (due)` the planner, misled by a table's
    # fresh statistics, could scan every pending row and run `due` again for each, and a claim
    # took 18 ms at 1,800 pending rows and 55 at 5,000 (bench/RESULTS.md, "fourteenth").
    # (Cast, or `= ANY ((SELECT ...))` would be read as ANY over the subquery's rows.)
    due_ids = cast(select(func.array_agg(due.c.id)).scalar_subquery(), ARRAY(BigInteger))
    locked = (
        select(row.id)
        .where(row.id == func.any(due_ids), _pending())
        .with_for_update(skip_locked=True)
        .cte("locked")
    )
    return (
        update(row)
        .where(row.id == locked.c.id, WebhookEndpoint.id == row.endpoint_id)
        .values(
            attempts=row.attempts + 1,
            available_at=bindparam("until"),
            last_attempt_at=bindparam("now"),
        )
        .returning(
            row.id,
            row.endpoint_id,
            row.message_id,
            row.payload,
            row.attempts,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookEndpoint.previous_secret,
            WebhookEndpoint.previous_secret_expires_at,
        )
    )


@dataclass(frozen=True, slots=True)
class _EndpointSecrets:
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None


# Compiled once (`shared.fast_sql`): through the ORM the rows and their endpoints were objects
# loaded, changed and flushed, every pass.
_CLAIM = fast_sql.Statement.of(_claim())


class WebhookRelay(OutboxRelay):
    """Sends history's webhook deliveries; see the module's docstring."""

    def __init__(
        self,
        *,
        session_factory: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        listen_dsn: str | None,
        per_endpoint: int,
        max_in_flight: int,
        timeout_seconds: float,
        poll_seconds: float,
        registry: CollectorRegistry | None,
        keep_days: int = 30,
    ) -> None:
        # The outbox's own metrics describe peers; a subscriber's are ours, so none there.
        super().__init__(
            model=WebhookDelivery,
            session_factory=session_factory,
            clients={},
            listen_dsn=listen_dsn,
            poll_seconds=poll_seconds,
            registry=None,
            source="webhooks",
        )
        self.client = client
        engine = session_factory.kw["bind"]
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.per_endpoint = per_endpoint
        self.max_in_flight = max_in_flight
        self.timeout_seconds = timeout_seconds
        self.webhook_metrics = WebhookMetrics(registry)
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._releases = 0
        # Delivered tries waiting to be written (delivery id, status code), and the writer.
        self._done: list[tuple[int, int | None]] = []
        self._writing: asyncio.Task[None] | None = None
        self.keep_days = keep_days
        self._purge_due = 0.0

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    def _notified(self, *args: Any) -> None:
        """A NOTIFY of new deliveries: wake unless every endpoint it names is at its limit."""
        payload = str(args[3]) if len(args) > 3 else ""
        named = [endpoint for endpoint in payload.split(",") if endpoint]
        if not named or any(self._in_flight.get(e, 0) < self.per_endpoint for e in named):
            self._wake.set()

    async def _listen(self, *, quiet: bool = False) -> asyncpg.Connection | None:
        """The outbox relay's LISTEN connection, on the webhooks' own channel."""
        if not self.listen_dsn:
            return None
        connection: asyncpg.Connection | None = None
        try:
            opened: asyncpg.Connection = await asyncio.wait_for(
                asyncpg.connect(
                    self.listen_dsn,
                    server_settings={"application_name": "ringback.webhooks.listen"},
                ),
                timeout=10,
            )
            connection = opened
            await opened.add_listener(CHANNEL, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if connection is not None:
                connection.terminate()
            if not quiet:
                log.warning("webhook.relay.listen_unavailable")
            return None
        return connection

    async def run_once(self, *, gather: bool = False) -> int:
        """Claim what is due (within each endpoint's free slots) and start sending it.

        `gather` is the outbox's (`BatchRoute.gather_seconds`): a subscriber gets each delivery
        on its own, so nothing here waits to gather."""
        releases = self._releases
        claimed = await self._claim()
        # A slot freed while this pass ran would find the loop asleep (its wake-up cleared
        # after the pass): report progress so the loop passes again at once instead of
        # waiting a poll interval. This took one endpoint from 33 to 121-192 deliveries/s
        # (bench/RESULTS.md, "Webhooks out").
        return claimed or int(self._releases != releases)

    async def _claim(self) -> int:
        room = self.max_in_flight - self.in_flight
        if room <= 0:
            return 0
        busy = list(self._in_flight.items())
        now = utcnow()
        lease = timedelta(seconds=self.timeout_seconds + LEASE_MARGIN_SECONDS)
        # Autocommitted: a row comes back only once its lease is taken, and whatever happens
        # to this process from then on, the row is due again when the lease ends.
        async with self._autocommit.connect() as conn:
            rows = await fast_sql.run(
                conn,
                _CLAIM,
                {
                    "per_endpoint": self.per_endpoint,
                    "room": room,
                    "busy_endpoints": [endpoint for endpoint, _ in busy],
                    "busy_counts": [count for _, count in busy],
                    "now": now,
                    "until": now + lease,
                },
            )
        # Sent in id order, as they were written (an update returns its rows in no order).
        claimed = [
            Claimed(
                id=row["id"],
                endpoint_id=row["endpoint_id"],
                url=row["url"],
                secrets=signing_secrets(_EndpointSecrets(*row[-3:]), now),
                message_id=row["message_id"],
                body=dumps(row["payload"]),
                tries=row["attempts"],
            )
            for row in sorted(rows, key=lambda row: int(row["id"]))
        ]
        for item in claimed:
            # The statement read the slots as they were when it was sent; slots only free up
            # while it runs (the claims are made here alone), so none is over-filled.
            self._in_flight[item.endpoint_id] = self._in_flight.get(item.endpoint_id, 0) + 1
            task = asyncio.create_task(self._send(item), name=f"webhook.{item.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.webhook_metrics.in_flight.set(self.in_flight)
        return len(claimed)

    def _release(self, endpoint_id: str) -> None:
        self._releases += 1
        left = self._in_flight.get(endpoint_id, 1) - 1
        if left > 0:
            self._in_flight[endpoint_id] = left
        else:
            self._in_flight.pop(endpoint_id, None)
        self.webhook_metrics.in_flight.set(self.in_flight)
        # A slot is free: rows of that endpoint waiting for one may go now.
        self._wake.set()

    async def _send(self, item: Claimed) -> None:
        try:
            outcome = await self._post(item)
        finally:
            # The subscriber is done with; its slot may serve the next row while this
            # one's result is written (the lease keeps the row from being claimed again).
            self._release(item.endpoint_id)
        self.webhook_metrics.sent.labels(item.endpoint_id, outcome.result).inc()
        try:
            await self._record(item, outcome)
        except Exception:
            # The lease ends and the row is sent again: at least once, never lost.
            log.exception("webhook.record.error", delivery_id=item.id)

    async def _post(self, item: Claimed) -> Outcome:
        """One try: the signed request, cut off after the timeout, its body read and dropped."""
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": item.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                item.secrets, message_id=item.message_id, timestamp=timestamp, body=item.body
            ),
            "user-agent": "ringback-webhooks/1",
        }
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self.client.stream(
                    "POST", item.url, content=item.body, headers=headers
                ) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= RESPONSE_READ_LIMIT_BYTES:
                            break
                    status = response.status_code
        except TimeoutError:
            error = f"no answer within {self.timeout_seconds:g} s"
            return Outcome(None, WebhookTryResult.TIMEOUT, error)
        except UnsafeUrl as exc:
            return Outcome(None, WebhookTryResult.REFUSED, str(exc))
        except httpx.HTTPError as exc:
            # The exception's class only: its text may quote the subscriber's URL.
            return Outcome(None, WebhookTryResult.FAILED, f"{type(exc).__name__}")
        if 200 <= status < 300:
            return Outcome(status, WebhookTryResult.DELIVERED)
        if status == 410:
            return Outcome(status, WebhookTryResult.GONE, "HTTP 410: the subscriber is gone")
        return Outcome(status, WebhookTryResult.FAILED, f"HTTP {status}")

    async def _record(self, item: Claimed, outcome: Outcome) -> None:
        """Store the try's result, and what it means for the endpoint."""
        if outcome.result is WebhookTryResult.DELIVERED:
            self._done.append((item.id, outcome.status_code))
            if self._writing is None or self._writing.done():
                self._writing = asyncio.create_task(
                    self._write_deliveries(), name="webhook.delivered"
                )
            return
        now = utcnow()
        async with self.sessions() as session:
            delivery = await session.get(WebhookDelivery, item.id, with_for_update=True)
            # FOR NO KEY UPDATE: ingest's new deliveries (a foreign key share lock on the
            # endpoint) are not held up while this try's result is written.
            endpoint = await session.get(
                WebhookEndpoint, item.endpoint_id, with_for_update={"key_share": True}
            )
            if delivery is None or endpoint is None:
                return  # the endpoint was deleted meanwhile
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            gone = outcome.result is WebhookTryResult.GONE
            delay = None if gone else retry_delay(delivery.attempts)
            if delay is None:
                delivery.dead_at = now
            else:
                delivery.available_at = now + timedelta(seconds=delay)
            if endpoint.failing_since is None:
                endpoint.failing_since = now
            if outcome.result is WebhookTryResult.GONE:
                self._disable(endpoint, WebhookDisabledReason.GONE, now)
            elif now - endpoint.failing_since >= timedelta(days=FAILING_DAYS_BEFORE_DISABLE):
                self._disable(endpoint, WebhookDisabledReason.FAILING, now)
            log.info(
                "webhook.delivery.failed",
                delivery_id=item.id,
                endpoint_id=item.endpoint_id,
                tries=delivery.attempts,
                status_code=outcome.status_code,
                result=outcome.result,
                final=delivery.dead_at is not None,
            )
            await session.commit()

    async def _write_deliveries(self) -> None:
        """Delivered tries' results, as many as finished together in one statement: those
        that finish while it runs go in the next (a statement each was a third of the
        statements history ran per call). A failed write is logged; the rows' leases end and
        they are sent again: at least once, never lost."""
        while self._done:
            done, self._done = self._done, []
            try:
                async with self._autocommit.connect() as conn:
                    await fast_sql.run(
                        conn,
                        _FAST_DELIVERED,
                        {
                            "delivery_ids": [delivery_id for delivery_id, _ in done],
                            "status_codes": [status for _, status in done],
                            "now": utcnow(),
                        },
                    )
            except Exception:
                log.exception("webhook.record.error", deliveries=len(done))

    def _disable(
        self, endpoint: WebhookEndpoint, reason: WebhookDisabledReason, now: datetime
    ) -> None:
        if not endpoint.enabled:
            return
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.disabled_at = now
        endpoint.updated_at = now
        self.webhook_metrics.disabled.labels(endpoint.id, reason).inc()
        log.warning("webhook.endpoint.disabled", endpoint_id=endpoint.id, reason=str(reason))

    async def refresh_gauges(self) -> None:
        """The backlog gauge, and the relay's housekeeping (the loop calls this every 5 s)."""
        async with self.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(WebhookDelivery).where(_pending())
            )
        self.webhook_metrics.backlog.set(count or 0)
        if time.monotonic() >= self._purge_due:
            self._purge_due = time.monotonic() + PURGE_INTERVAL_SECONDS
            await self.purge_finished()

    async def purge_finished(self) -> int:
        """Delete delivered and dead deliveries older than `keep_days`, a bounded batch at a
        time: their snapshots hold personal data, and the log need not be kept for ever."""
        cutoff = utcnow() - timedelta(days=self.keep_days)
        row = WebhookDelivery
        total = 0
        while True:
            oldest = (
                select(row.id)
                .where(
                    or_(row.delivered_at.is_not(None), row.dead_at.is_not(None)),
                    row.created_at < cutoff,
                )
                .order_by(row.created_at)
                .limit(PURGE_BATCH)
            )
            async with self.sessions() as session:
                deleted = len(
                    (
                        await session.execute(
                            delete(row).where(row.id.in_(oldest)).returning(row.id)
                        )
                    ).all()
                )
                await session.commit()
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    async def drain(self, grace_seconds: float) -> None:
        """Wait a while for requests in flight; what is cut off is sent again later."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # What was delivered is written before the process goes (else sent again later).
        if self._writing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing


async def replay(session: AsyncSession, *, endpoint_id: str, delivery_id: int) -> bool:
    """Put one delivery back to pending, due now, with its tries counted afresh; False if the
    endpoint has no such delivery. The body and `webhook-id` stay the same."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id)
        .values(
            delivered_at=None,
            dead_at=None,
            attempts=0,
            available_at=func.now(),
            last_error=None,
        )
        .returning(WebhookDelivery.endpoint_id)
    )
    if result.first() is None:
        return False
    await session.execute(
        text("SELECT pg_notify(:channel, :endpoint)"), {"channel": CHANNEL, "endpoint": endpoint_id}
    )
    return True


def make_client(settings: HistorySettings) -> httpx.AsyncClient:
    """The subscribers' client: guarded addresses, no redirects, no proxies from the env, and
    no cookie jar (one subscriber's cookie is never sent back to it)."""
    return StatelessClient(
        transport=guarded_transport(
            allow_private=settings.webhook_allow_private,
            max_connections=settings.history_webhook_max_in_flight,
            timeout_seconds=settings.history_webhook_timeout_seconds,
        ),
        timeout=httpx.Timeout(settings.history_webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )


def webhook_relay_extension(settings: HistorySettings) -> Extension:
    """The app extension sending webhooks, beside (never inside) the request path."""

    @asynccontextmanager
    async def extension(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings)
        relay = WebhookRelay(
            session_factory=app.state.session_factory,
            client=client,
            listen_dsn=asyncpg_dsn(settings.direct_database_url_for("history")),
            per_endpoint=settings.history_webhook_per_endpoint,
            max_in_flight=settings.history_webhook_max_in_flight,
            timeout_seconds=settings.history_webhook_timeout_seconds,
            poll_seconds=settings.history_relay_poll_seconds,
            registry=app.state.registry,
            keep_days=settings.history_webhook_keep_days,
        )
        app.state.webhook_relay = relay
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop), name="history.webhook.relay")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await relay.drain(grace_seconds=settings.history_webhook_timeout_seconds)
            await client.aclose()

    return extension
