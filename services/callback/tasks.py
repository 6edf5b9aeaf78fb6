"""arq job functions: each takes ids, opens its own session, checks state before any side effect.

Delivery is at least once, so `send_notification` is written to be run any number of times:
the row is the ledger. It is marked `sending` (attempt counted, lease taken) and committed
before the provider is called; a row found `sent` or `dead` is left alone; a row found in
`sending` whose lease has run out belongs to a worker that died mid-send and is re-sent with
the same idempotency key (SMS) or Message-ID (email), so the provider can drop the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import httpx
import structlog
from arq import Retry
from arq.connections import ArqRedis
from asyncpg import Record
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.callback import agents, creation, events, repository, survey
from services.callback.dialers.base import PhoneDialer
from services.callback.jobs import SEND_NOTIFICATION, ArqNotificationQueue
from services.callback.models import Callback, Notification, NotificationKind
from services.callback.send_rule import Decision, decide, waits_on_callback
from services.callback.senders.base import (
    EmailSender,
    OutgoingEmail,
    OutgoingSms,
    SendError,
    SendResult,
    SmsSender,
    TransientSendError,
)
from services.callback.settings import CallbackSettings
from shared.backoff import backoff_seconds
from shared.coalesce import Coalescer
from shared.db import commit, utcnow
from shared.tracing import start_span
from shared.vocabulary import NotificationChannel, NotificationStatus

log = structlog.get_logger("ringback.callback.worker")

SWEEP_BATCH = 1000
# An owed confirmation older than this has lost its `book_and_confirm` job (a Redis flush,
# a crash between commit and enqueue): the sweeper enqueues it again.
OWED_CONFIRMATION_GRACE = timedelta(seconds=10)
# A job that finds a send not yet due leaves it to its deferred job or the sweeper.
_EARLY_TOLERANCE = timedelta(seconds=2)


class WorkerMetrics:
    """The worker's own Prometheus metrics (served on RINGBACK_WORKER_METRICS_PORT)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sla_breaches = Counter(
            "ringback_callback_sla_breaches_total",
            "Callbacks that expired: nobody worked them before their deadline.",
            registry=self.registry,
        )
        self.leases_returned = Counter(
            "ringback_callback_leases_returned_total",
            "Claims that ran out and went back to the queue.",
            registry=self.registry,
        )
        self.asap_bookings = Counter(
            "ringback_callback_asap_bookings_total",
            "ASAP booking attempts by result (booked, no slot).",
            ["result"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "ringback_notifications_total",
            "Provider calls by channel, provider and result (sent, failed, dead).",
            ["channel", "provider", "result"],
            registry=self.registry,
        )
        self.dials = Counter(
            "ringback_dials_total",
            "Requests to the phone system to place a dial, by what came of them "
            "(ringing_agent, failed, unknown).",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ringback_queue_depth",
            "Jobs waiting in the arq queue (the worker autoscaler's signal).",
            registry=self.registry,
        )


# A job's metrics class (made from the worker's registry).
_M = TypeVar("_M")


@dataclass
class WorkerState:
    """What the worker's jobs share, built in `on_startup` and kept in `ctx["state"]`."""

    settings: CallbackSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    sms: SmsSender
    email: EmailSender
    history: httpx.AsyncClient | None = None
    # What places dials (§10); None when agents dial by hand.
    dialer: PhoneDialer | None = None
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    redis: ArqRedis | None = None
    relay_task: asyncio.Task[None] | None = None
    # Set at shutdown: stops the relay and the queue-depth watcher.
    relay_stop: asyncio.Event = field(default_factory=asyncio.Event)
    depth_task: asyncio.Task[None] | None = None
    # The same pool, for single statements that commit by themselves (the claim).
    autocommit: AsyncEngine = field(init=False)
    # Concurrent jobs' claims, and their sends' results, each written by one statement for
    # all that arrived while the one before ran (`shared.coalesce`).
    claims: Coalescer[str, Record | None] = field(init=False)
    marks: Coalescer[_Sent, Record | None] = field(init=False)

    # A job's own metrics, made once per process: arq hands each job run a fresh copy of
    # `ctx`, so metrics kept there would be registered again (and refused) on the next run.
    _job_metrics: dict[object, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # One statement in flight, so the next takes everything that arrived meanwhile: at
        # two, batches were half the size and a send cost 15-25% more CPU (bench/RESULTS.md).
        # A statement that waits on a row lock holds the others up only while the holder's
        # transaction lasts, and every transaction that locks a notification is short.
        self.claims = Coalescer(partial(_claim_batch, self))
        self.marks = Coalescer(partial(_mark_sent_batch, self))

    def job_metrics(self, kind: Callable[[CollectorRegistry], _M]) -> _M:
        """The metrics `kind` makes in this worker's registry, made on first use."""
        if kind not in self._job_metrics:
            self._job_metrics[kind] = kind(self.metrics.registry)
        made: _M = self._job_metrics[kind]
        return made


def state_of(ctx: dict[str, Any]) -> WorkerState:
    state = ctx["state"]
    assert isinstance(state, WorkerState)
    return state


@dataclass(frozen=True, slots=True)
class _Claim:
    """A send this job owns: the notification's content and the attempt number it holds."""

    notification_id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    attempt: int
    kind: str = ""
    # The callback it belongs to, as the claim found it: its result's event names them.
    owner: events.MessageOwner | None = None


async def send_notification(ctx: dict[str, Any], notification_id: str) -> str:
    """Send one notification at most once per success; returns what happened (no PII)."""
    return await deliver(state_of(ctx), notification_id)


async def deliver(state: WorkerState, notification_id: str) -> str:
    claim = await _claim(state, notification_id)
    if isinstance(claim, str):
        return claim
    return await deliver_claimed(state, claim)


async def deliver_claimed(state: WorkerState, claim: _Claim) -> str:
    """Send what this job has claimed (committed `sending`), and record what came of it."""
    if claim.kind == NotificationKind.SURVEY and not await _survey_wanted(state, claim):
        return NotificationStatus.CANCELLED
    try:
        result: SendResult | SendError = await _send(state, claim)
    except asyncio.CancelledError:
        # SIGTERM or a timeout: we do not know whether the provider took it. Hand the row
        # back at once rather than after the lease; the re-send carries the same key.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_release(state, claim), timeout=2)
        raise
    return await _record(state, claim, result)


async def _claim(state: WorkerState, notification_id: str) -> _Claim | str:
    """Mark the row `sending` and commit before any side effect; or say why not."""
    claim = await _claim_if_due(state, notification_id)
    if claim is not None:
        return claim
    return await _claim_carefully(state, notification_id)


async def _claim_if_due(state: WorkerState, notification_id: str) -> _Claim | None:
    """The common case in one autocommitted statement (with the claims of this worker's other
    jobs that arrive meanwhile): a queued or failed row that is due.

    Anything else (missing, done, early, held, out of tries, a reminder whose callback moved)
    is None, for `_claim_carefully` to look at under a row lock.
    """
    row = await state.claims.submit(notification_id)
    if row is None:
        return None
    owner = None
    callback_id, phone = row["callback_id"], row["phone"]
    if callback_id is not None and phone is not None:
        owner = _owner(
            callback_id,
            phone=phone,
            language=row["language"],
            email=row["email"],
            name=row["name"],
        )
    return _Claim(
        notification_id=row["id"],
        channel=row["channel"],
        recipient=row["recipient"],
        subject=row["subject"],
        body=row["body"],
        attempt=row["attempts"],
        kind=row["kind"],
        owner=owner,
    )


async def _claim_batch(state: WorkerState, notification_ids: Sequence[str]) -> list[Record | None]:
    """The claims of concurrent jobs in one autocommitted statement; each row to one job."""
    now = utcnow()
    async with state.autocommit.connect() as conn:
        claimed = await repository.claim_due_notifications(
            conn,
            notification_ids,
            now=now,
            due_by=now + _EARLY_TOLERANCE,
            lease_until=now + timedelta(seconds=state.settings.notification_lease_seconds),
            sms_provider=state.sms.name,
            email_provider=state.email.name,
        )
    # Two jobs asking for one id (a re-run beside the first run): the first holds the claim,
    # the second finds the row held, as it would have one statement later.
    return [claimed.pop(notification_id, None) for notification_id in notification_ids]


def _owner(
    callback_id: str, *, phone: str, language: str, email: str | None, name: str | None
) -> events.MessageOwner:
    return events.MessageOwner(
        callback_id=callback_id,
        phone=phone,
        customer=events.customer_fields(phone=phone, language=language, email=email, name=name),
    )


async def _claim_carefully(state: WorkerState, notification_id: str) -> _Claim | str:
    """Look at the row under its lock: say why it is not sent now, or take a crashed send over."""
    async with state.sessions() as session:
        row = await repository.lock_notification(session, notification_id)
        if row is None:
            log.warning("callback.notification.missing", notification_id=notification_id)
            return "missing"
        now = utcnow()
        due_by = now + _EARLY_TOLERANCE
        callback = await _callback(session, row)
        callback_status = None
        if waits_on_callback(row, due_by=due_by):
            callback_status = callback.status if callback is not None else None
        decision = decide(row, callback_status=callback_status, now=now, due_by=due_by)
        if decision == Decision.FINISHED:
            log.info(
                "callback.notification.already_done",
                notification_id=row.id,
                status=row.status,
            )
            return f"already {row.status}"
        if decision == Decision.NOT_DUE:
            # Enqueued ahead of its time (a reminder re-queued early): its deferred job or
            # the sweeper sends it when it is due.
            return "not due"
        if decision == Decision.UNWANTED:
            row.status = NotificationStatus.CANCELLED
            await session.commit()
            return NotificationStatus.CANCELLED
        if decision == Decision.HELD:
            # Another job holds the send lease; look again when it runs out.
            remaining = (row.next_attempt_at - now).total_seconds()
            raise Retry(defer=remaining + 0.5)
        if decision == Decision.OUT_OF_TRIES:
            # Found `sending` with no tries left: the last try's worker died. Park it for an
            # operator rather than send beyond the budget.
            row.last_error = row.last_error or "attempts exhausted while a send was in flight"
            await _dead(session, row)
            await session.commit()
            return NotificationStatus.DEAD
        if row.status == NotificationStatus.SENDING:
            log.warning("callback.notification.resend_after_crash", notification_id=row.id)
        claim = take(row, callback, now=now, **_lease(state, row, now))
        await session.commit()
    return claim


def _lease(state: WorkerState, row: Notification, now: datetime) -> dict[str, Any]:
    """Who sends `row` and until when this job holds it."""
    sender = state.sms if row.channel == NotificationChannel.SMS else state.email
    lease = timedelta(seconds=state.settings.notification_lease_seconds)
    return {"provider": sender.name, "lease_until": now + lease}


def take(
    row: Notification,
    callback: Callback | None,
    *,
    provider: str,
    now: datetime,
    lease_until: datetime,
) -> _Claim:
    """Claim `row` for a send by this job, in Python: what `repository.claim_due_notifications`
    writes in SQL (tests/callback/test_send_rule.py holds the two equal). The caller writes the
    row and commits before the provider is called."""
    row.status = NotificationStatus.SENDING
    row.attempts += 1
    row.provider = provider
    row.next_attempt_at = lease_until
    row.updated_at = now
    owner = None
    if callback is not None:
        owner = _owner(
            callback.id,
            phone=callback.phone,
            language=callback.language,
            email=callback.email,
            name=callback.name,
        )
    return _Claim(
        notification_id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        subject=row.subject,
        body=row.body,
        attempt=row.attempts,
        kind=row.kind,
        owner=owner,
    )


async def _survey_wanted(state: WorkerState, claim: _Claim) -> bool:
    """A survey waits minutes or hours: the number may have said STOP, or gone on the
    do-not-call list, since it was made. Then it is cancelled rather than sent."""
    async with state.sessions() as session:
        if await survey.still_wanted(session, notification_id=claim.notification_id):
            return True
        await repository.cancel_claimed_notification(
            session, claim.notification_id, attempt=claim.attempt
        )
        await session.commit()
    return False


async def _send(state: WorkerState, claim: _Claim) -> SendResult | SendError:
    try:
        if claim.channel == NotificationChannel.SMS:
            sms = OutgoingSms(
                notification_id=claim.notification_id,
                to=claim.recipient,
                text=claim.body,
                sender=survey.sender_of(state.settings, claim.kind),
            )
            return await state.sms.send_sms(sms)
        return await state.email.send_email(
            OutgoingEmail(
                notification_id=claim.notification_id,
                to=claim.recipient,
                subject=claim.subject or "",
                body=claim.body,
            )
        )
    except SendError as exc:
        return exc
    except Exception as exc:
        # A provider bug must not leave the row in `sending`: count it as a failed try.
        log.exception("callback.notification.provider_error", notification_id=claim.notification_id)
        return TransientSendError(f"unexpected {type(exc).__name__}")


async def _record(state: WorkerState, claim: _Claim, outcome: SendResult | SendError) -> str:
    """Write what the provider said, with its history event, in one transaction."""
    if isinstance(outcome, SendResult):
        return await _record_sent(state, claim, outcome)
    return await _record_failure(state, claim, outcome)


@dataclass(frozen=True, slots=True)
class _Sent:
    """A send the provider took, to be marked `sent`."""

    claim: _Claim
    outcome: SendResult


def _sent_result(sent: _Sent, now: datetime) -> repository.SentResult:
    claim = sent.claim
    message = events.SentMessage(
        notification_id=claim.notification_id,
        kind=claim.kind,
        channel=claim.channel,
        attempts=claim.attempt,
        recipient=claim.recipient,
    )
    return repository.SentResult(
        notification_id=claim.notification_id,
        attempt=claim.attempt,
        message_id=sent.outcome.message_id,
        event=events.message_result_row(message=message, callback=claim.owner, sent=True, now=now),
    )


async def _mark_sent_batch(state: WorkerState, sends: Sequence[_Sent]) -> list[Record | None]:
    """Concurrent jobs' sends marked `sent`, with their events, in one autocommitted statement."""
    now = utcnow()
    results = [_sent_result(sent, now) for sent in sends]
    async with state.autocommit.connect() as conn:
        marked = await repository.mark_notifications_sent(conn, results, now=now)
    return [marked.pop(sent.claim.notification_id, None) for sent in sends]


async def _record_sent(state: WorkerState, claim: _Claim, outcome: SendResult) -> str:
    """`sent` and its `notification_sent` event, written together in one statement."""
    sent = _Sent(claim, outcome)
    row: Record | None
    if claim.kind == NotificationKind.SURVEY:
        # A survey's send starts its reply window: written in the same transaction.
        now = utcnow()
        async with state.sessions() as session:
            marked = await repository.mark_notifications_sent(
                session, [_sent_result(sent, now)], now=now
            )
            row = marked.get(claim.notification_id)
            if row is not None:
                await survey.sent(session, notification_id=row["id"], now=utcnow())
            await session.commit()
    else:
        row = await state.marks.submit(sent)
    if row is None:
        # Our lease ran out and another job took over (or an erasure cancelled the send):
        # its outcome is the one that counts.
        log.warning("callback.notification.superseded", notification_id=claim.notification_id)
        return "superseded"
    channel = row["channel"]
    state.metrics.notifications.labels(channel, row["provider"], NotificationStatus.SENT).inc()
    log.info(
        "callback.notification.sent",
        notification_id=row["id"],
        channel=channel,
        attempts=claim.attempt,
    )
    return NotificationStatus.SENT


async def _record_failure(state: WorkerState, claim: _Claim, outcome: SendError) -> str:
    """A failed try: `failed` with a retry after backoff, or `dead` (with its event) at the end."""
    settings = state.settings
    async with state.sessions() as session:
        row = await repository.lock_notification(session, claim.notification_id)
        if row is None or row.status != NotificationStatus.SENDING or row.attempts != claim.attempt:
            # Our lease ran out and another job took over; its outcome is the one that counts.
            log.warning("callback.notification.superseded", notification_id=claim.notification_id)
            return "superseded"
        row.last_error = outcome.detail[:1000]
        if outcome.permanent or row.attempts >= row.max_attempts:
            await _dead(session, row)
            await session.commit()
            state.metrics.notifications.labels(
                row.channel, row.provider, NotificationStatus.DEAD
            ).inc()
            return NotificationStatus.DEAD
        delay = backoff_seconds(
            row.attempts,
            base=settings.notification_backoff_base_seconds,
            cap=settings.notification_backoff_cap_seconds,
        )
        row.status = NotificationStatus.FAILED
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        await session.commit()
        state.metrics.notifications.labels(
            row.channel, row.provider, NotificationStatus.FAILED
        ).inc()
        log.warning(
            "callback.notification.failed",
            notification_id=row.id,
            channel=row.channel,
            attempts=row.attempts,
            retry_in=round(delay, 2),
        )
    raise Retry(defer=delay)


async def _callback(session: AsyncSession, row: Notification) -> Callback | None:
    """The callback a message belongs to (None for an acknowledgement, which has none)."""
    if row.callback_id is None:
        return None
    return await repository.find_callback(session, row.callback_id)


async def _dead(session: AsyncSession, row: Notification) -> None:
    row.status = NotificationStatus.DEAD
    callback = await _callback(session, row)
    await events.notification_result(session, callback=callback, notification=row, sent=False)
    log.error(
        "callback.notification.dead",
        notification_id=row.id,
        channel=row.channel,
        attempts=row.attempts,
    )


async def _release(state: WorkerState, claim: _Claim) -> None:
    """Give up the send lease of an interrupted job, so the re-run need not wait for it."""
    async with state.sessions() as session:
        row = await repository.lock_notification(session, claim.notification_id)
        if (
            row is not None
            and row.status == NotificationStatus.SENDING
            and row.attempts == claim.attempt
        ):
            row.next_attempt_at = utcnow()
            await session.commit()


async def sweep_notifications(ctx: dict[str, Any]) -> int:
    """Cron: re-enqueue what is due and unfinished (after a Redis flush, a lost job, a crash)."""
    redis: ArqRedis = ctx["redis"]
    return await sweep(state_of(ctx), redis)


async def sweep(state: WorkerState, redis: ArqRedis) -> int:
    """Enqueue every due, unfinished notification and every owed confirmation.

    Job ids make a duplicate a no-op, so the sweeper can run as often as it likes.
    """
    queue = ArqNotificationQueue(redis, queue_name=state.settings.queue_name)
    total = 0
    now = utcnow()
    async with state.sessions() as session:
        ids = await repository.due_notifications(session, now=now, limit=SWEEP_BATCH)
        owed = await repository.owed_confirmations(
            session, older_than=now - OWED_CONFIRMATION_GRACE, limit=SWEEP_BATCH
        )
    total += await queue.enqueue_notifications(ids)
    for callback_id in owed:
        total += await queue.enqueue_booking(callback_id)
    if total:
        log.info("callback.sweeper.enqueued", count=total, due=len(ids), owed=len(owed))
    else:
        log.debug("callback.sweeper.idle")
    return total


async def book_and_confirm(ctx: dict[str, Any], callback_id: str) -> str:
    """After a create: book an ASAP callback into the earliest free slot, then confirm it."""
    state = state_of(ctx)
    redis: ArqRedis = ctx["redis"]
    return await run_book_and_confirm(state, redis, callback_id)


async def run_book_and_confirm(state: WorkerState, redis: ArqRedis, callback_id: str) -> str:
    queue = _SendHere(state, ArqNotificationQueue(redis, queue_name=state.settings.queue_name))
    async with state.sessions() as session:
        result = await creation.book_and_confirm(
            session=session,
            settings=state.settings,
            callback_id=callback_id,
            queue=queue,
            take_now=queue.take_now,
        )
        await commit(session)
    if result in ("booked", "no slot"):
        state.metrics.asap_bookings.labels(result).inc()
    if queue.due:
        await asyncio.gather(*(_deliver_here(state, queue, i) for i in queue.due))
    return result


class _SendHere:
    """The booking job's queue: the sends due now are made by the job itself, after its commit,
    rather than as a job each (two arq jobs per call were most of the worker's Redis round
    trips); a send for later, and a booking, still go to arq.

    Those sends are claimed before their rows are written (`take_now`): the rows are written
    `sending`, leased to this job, in the booking's transaction, so no claim statement of
    their own follows the commit. A job that dies after the commit leaves them to the
    sweeper once the lease runs out, as a send that dies mid-call does."""

    def __init__(self, state: WorkerState, queue: ArqNotificationQueue) -> None:
        self.state = state
        self.queue = queue
        self.due: list[str] = []
        self.claimed: dict[str, _Claim] = {}

    def take_now(self, rows: Sequence[Notification], callback: Callback, now: datetime) -> None:
        """Claim the rows `notify.send` is about to write that are due now. A rolled-back
        booking's claims stay here unused: its rows never reach `due`, and new rows have new
        ids."""
        due_by = now + _EARLY_TOLERANCE
        for row in rows:
            if waits_on_callback(row, due_by=due_by):
                continue
            if decide(row, callback_status=None, now=now, due_by=due_by) != Decision.SEND:
                continue
            self.claimed[row.id] = take(row, callback, now=now, **_lease(self.state, row, now))

    async def enqueue_notifications(self, notification_ids: Iterable[str]) -> int:
        ids = list(notification_ids)
        self.due += ids
        return len(ids)

    async def enqueue_notification_at(self, notification_id: str, at: datetime) -> bool:
        return await self.queue.enqueue_notification_at(notification_id, at)

    async def enqueue_booking(self, callback_id: str) -> bool:
        return await self.queue.enqueue_booking(callback_id)


async def _deliver_here(state: WorkerState, queue: _SendHere, notification_id: str) -> None:
    """`send_notification`'s work in this job; what it would retry goes to arq as its job.

    The row was committed first (claimed by this job, or `queued`), so a worker that dies here
    leaves it to the sweeper.
    """
    claim = queue.claimed.get(notification_id)
    try:
        # The same span as the job's, under the booking job's: one trace still shows each send.
        with start_span(SEND_NOTIFICATION, expected=(Retry,)) as span:
            outcome = await asyncio.wait_for(
                deliver_claimed(state, claim) if claim else deliver(state, notification_id),
                timeout=state.settings.notification_timeout_seconds,
            )
            if span.is_recording():
                span.set_attribute("arq.job_result", outcome)
    except Retry as retry:
        at = utcnow() + timedelta(milliseconds=retry.defer_score or 0)
        await queue.queue.enqueue_notification_at(notification_id, at)
    except Exception:
        log.exception("callback.notification.inline_send_failed", notification_id=notification_id)
        await queue.queue.enqueue_notifications([notification_id])


async def expire_callbacks(ctx: dict[str, Any]) -> int:
    """Cron: callbacks nobody worked before their deadline become `expired` (SLA breaches)."""
    return await run_expiry(state_of(ctx))


async def run_expiry(state: WorkerState) -> int:
    async with state.sessions() as session:
        expired = await agents.expire_overdue(session=session)
        await commit(session)
    if expired:
        state.metrics.sla_breaches.inc(len(expired))
        for callback_id in expired:
            log.warning("callback.sla_breach", callback_id=callback_id)
    else:
        log.debug("callback.expiry.idle")
    return len(expired)


async def release_leases(ctx: dict[str, Any]) -> int:
    """Cron: claims that ran out go back to the queue (claims also take them over lazily)."""
    state = state_of(ctx)
    async with state.sessions() as session:
        returned = await agents.release_lapsed_leases(session=session)
        await commit(session)
    if returned:
        state.metrics.leases_returned.inc(returned)
        log.info("callback.leases.returned", count=returned)
    else:
        log.debug("callback.leases.idle")
    return returned
