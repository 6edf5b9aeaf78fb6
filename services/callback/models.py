"""ORM models of the callback schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from shared.db import make_metadata, utcnow
from shared.ids import new_id
from shared.outbox import OutboxMixin, outbox_indexes
from shared.vocabulary import (
    OPEN_STATUSES,
    RUNNING_DIAL_STATUSES,
    UNFINISHED_NOTIFICATION_STATUSES,
    AgentPresence,
    AttemptOutcome,
    CallbackStatus,
    Dialer,
    DialStatus,
    LineResult,
    NotificationChannel,
    NotificationStatus,
    SurveyStatus,
)


# What a message is about; with the callback it makes the message's event key (`notify`).
class NotificationKind(StrEnum):
    CONFIRMATION = "confirmation"
    REMINDER = "reminder"
    TRIED = "tried"
    CANCELLED = "cancelled"
    REBOOKED = "rebooked"
    ACKNOWLEDGEMENT = "acknowledgement"
    # A promise at risk (§14): a later time offered, once per callback.
    AT_RISK_OFFER = "at_risk_offer"
    # The satisfaction question (§13), once per survey; and the one answer to STOP per number.
    SURVEY = "survey"
    STOP_CONFIRMED = "stop_confirmed"


# What an erased person's messages are addressed to from then on (never a real address).
ERASED_RECIPIENT = "erased"

# A callback waiting for an agent: the queue's index and the claim read these.
WAITING_STATUSES = (CallbackStatus.PENDING, CallbackStatus.SCHEDULED)


def _in(column: str, values: Iterable[str]) -> str:
    # `str(v)`: a StrEnum member's repr is not its value, and the DB holds the value.
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _is(column: str, value: str) -> str:
    return f"{column} = {str(value)!r}"


# A callback's place in the claim order after priority (§9): when the caller entered the phone
# queue, else when it falls due. The database computes `rank_at` from this declaration and
# `rank_at_of` reads the same one for a row in memory; a test holds the two equal.
RANK_SOURCES = ("queued_at", "due_at")


def rank_at_of(callback: Callback) -> datetime:
    moments: list[datetime | None] = [getattr(callback, name) for name in RANK_SOURCES]
    return next(m for m in moments if m is not None)


# Set only while `lifecycle.transition` moves a status: see `Callback._moved_by_lifecycle`.
_moving_status: ContextVar[bool] = ContextVar("callback_status_moving", default=False)


@contextmanager
def moving_status() -> Iterator[None]:
    """Let `lifecycle.transition`, and nothing else, set a stored callback's status."""
    token = _moving_status.set(True)
    try:
        yield
    finally:
        _moving_status.reset(token)


class Base(DeclarativeBase):
    metadata = make_metadata("callback")


class Callback(Base):
    """A promise to call a customer back, and where it stands."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint(_in("status", CallbackStatus), name="status"),
        # The database, not the code, guarantees one open callback per number per queue.
        Index(
            "uq_callbacks_phone_open",
            "phone",
            "queue",
            unique=True,
            postgresql_where=text(_in("status", OPEN_STATUSES)),
        ),
        Index("ix_callbacks_phone", "phone"),
        Index("ix_callbacks_status_due_at", "status", "due_at"),
        Index("ix_callbacks_agent_id", "agent_id", postgresql_where=text("agent_id IS NOT NULL")),
        # The claim walks this in its order (§9) and stops at the first callback it may take.
        # Open, not only waiting: a lapsed claim is claimable too, and an OR the index did not
        # cover would make the planner sort every candidate instead.
        Index(
            "ix_callbacks_queue",
            text("priority DESC"),
            "rank_at",
            "id",
            postgresql_where=text(_in("status", OPEN_STATUSES)),
        ),
        Index("ix_callbacks_queue_status", "queue", "status"),
        # A seat is held in its own queue's slot. Checked at COMMIT: the booking job writes
        # the slot before it takes the seat (`booking.book_earliest`'s `seat_last`).
        ForeignKeyConstraint(
            ["queue", "slot_start"],
            ["slot_bookings.queue", "slot_bookings.slot_start"],
            name="fk_callbacks_queue_slot_bookings",
            deferrable=True,
            initially="DEFERRED",
        ),
        Index(
            "ix_callbacks_lease",
            "lease_expires_at",
            postgresql_where=text(_is("status", CallbackStatus.IN_PROGRESS)),
        ),
        Index(
            "ix_callbacks_confirm_key",
            "updated_at",
            postgresql_where=text("confirm_key IS NOT NULL"),
        ),
        Index("ix_callbacks_slot_start", "slot_start"),
        CheckConstraint("(slot_start IS NULL) = (slot_end IS NULL)", name="slot_pair"),
        CheckConstraint(
            f"status <> {str(CallbackStatus.SCHEDULED)!r} OR slot_start IS NOT NULL",
            name="scheduled_slot",
        ),
        CheckConstraint(
            f"status <> {str(CallbackStatus.IN_PROGRESS)!r}"
            " OR (agent_id IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name="in_progress_lease",
        ),
        CheckConstraint("attempt_count >= 0", name="attempt_count"),
        # An owner's hold always ends: without an end the callback would be theirs forever.
        CheckConstraint("owner_agent_id IS NULL OR owner_until IS NOT NULL", name="owner_until"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    phone: Mapped[str] = mapped_column(String(16))
    # The queue it belongs to (§9), and why it is in `default` when the contact named an
    # unknown one. Not a foreign key: closed callbacks outlive a deleted queue.
    queue: Mapped[str] = mapped_column(String(40), server_default=text("'default'"))
    queue_reason: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(2))
    # False when the language was only the site default: anyone in the queue may take it.
    language_known: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    status: Mapped[str] = mapped_column(String(16), default=CallbackStatus.PENDING)
    source: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    first_contact_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the caller entered the phone queue, for a callback asked for while waiting (§11).
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The time spoken to that caller ("about 12 minutes"): their promise (`PROMISE_SOURCES`).
    told_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The claim's order after priority (`RANK_SOURCES`), kept by the database so no code path
    # can let it drift; read `rank_at_of(callback)` in Python (this is refreshed on load only).
    rank_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        Computed(f"coalesce({', '.join(RANK_SOURCES)})", persisted=True),
        deferred=True,
    )
    # Only this agent may claim it until `owner_until` ("I'll call you back myself").
    owner_agent_id: Mapped[str | None] = mapped_column(String(64))
    owner_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sla_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    contact_count: Mapped[int] = mapped_column(Integer, default=1)
    consent_sms: Mapped[bool] = mapped_column(default=True)
    consent_email: Mapped[bool] = mapped_column(default=True)
    message: Mapped[str | None] = mapped_column(Text)
    # Contact points a later contact gave (anyone who knows the number can send one): shown to
    # agents as unverified, never where a link, reminder or notice goes (docs/reliability.md §3).
    unverified_email: Mapped[str | None] = mapped_column(String(254))
    unverified_name: Mapped[str | None] = mapped_column(String(200))
    unverified_message: Mapped[str | None] = mapped_column(Text)
    unverified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_confirmation_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # ASAP: due at once, booked by a job into the earliest free slot before the SLA deadline.
    asap: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # A window the customer asked for (`preferred.not_before/not_after`), searched for a slot.
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The one slot this callback holds (a seat in `slot_bookings`), if any.
    slot_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    slot_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Grows with every booking; reminder and rebooking notices are keyed by it.
    booking_seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Why this callback needs a person's eye (`no_slot_before_deadline`, `requested_slot_full`).
    flag: Mapped[str | None] = mapped_column(String(48))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    outcome: Mapped[str | None] = mapped_column(String(32))
    # Set while a confirmation is owed: the `book_and_confirm` job books (ASAP) and confirms,
    # then clears it; the sweeper re-enqueues the job for any row left with it set.
    confirm_key: Mapped[str | None] = mapped_column(String(255))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    # Read-only (`viewonly`): for the detail view's eager loads. Rows are written with their
    # `callback_id`, and a flush then has no dependencies between the tables to sort out:
    # that bookkeeping was a third of the booking job's flush (bench/RESULTS.md, #21).
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="callback", lazy="raise", order_by="Notification.id", viewonly=True
    )
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="callback", lazy="raise", order_by="Attempt.number", viewonly=True
    )

    @validates("status")
    def _moved_by_lifecycle(self, _key: str, status: str) -> str:
        # `lifecycle.transition` is the one place a stored callback's status moves: it checks
        # the transition table, clears what the new state forbids and writes the history event.
        # A new row may start where it likes (the create, a test's fixture).
        if _moving_status.get() or not inspect(self).has_identity:
            return status
        raise RuntimeError("a callback's status moves only through lifecycle.transition")


class SlotBooking(Base):
    """Seats taken in one slot. The database refuses `booked > capacity`, under any load.

    A seat is taken with `UPDATE ... SET booked = booked + 1 WHERE booked < :capacity` (the
    slot's first with an `INSERT`, `repository.take_seat`): the row lock serialises writers
    and the condition, checked again once the row is locked, stops the one past the last seat.
    """

    __tablename__ = "slot_bookings"
    __table_args__ = (
        CheckConstraint("booked >= 0", name="booked_not_negative"),
        CheckConstraint("booked <= capacity", name="booked_within_capacity"),
        CheckConstraint("slot_end > slot_start", name="slot_order"),
    )

    # Each queue has its own slots (its own plan and staff).
    queue: Mapped[str] = mapped_column(
        String(40), primary_key=True, server_default=text("'default'")
    )
    slot_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    slot_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The capacity when the last seat was taken (the plan may change; seats never vanish).
    capacity: Mapped[int] = mapped_column(Integer)
    booked: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Queue(Base):
    """A team's line (§9): its numbers, languages, zone, plan, SLA and retry policy.

    `config` is the body of `PUT /v1/queues/{key}` as validated (`queues.QueueIn`); the
    columns are the parts SQL reads.
    """

    __tablename__ = "queues"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: the site's zone (`RINGBACK_SITE_TIMEZONE`), as v1's single queue had.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # None: the site default (`RINGBACK_LANGUAGE_WAIT_MINUTES`); read by the claim's SQL.
    language_wait_minutes: Mapped[int | None] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QueueNumber(Base):
    """A number customers dial, owned by one queue: the database keeps it to one."""

    __tablename__ = "queue_numbers"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    queue: Mapped[str] = mapped_column(ForeignKey("queues.key", ondelete="CASCADE"))


class Agent(Base):
    """An agent known to `/v1/agents`: their queues and languages, and where they are."""

    __tablename__ = "agents"
    __table_args__ = (CheckConstraint(_in("presence", AgentPresence), name="presence"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    queues: Mapped[list[str]] = mapped_column(JSONB)
    languages: Mapped[list[str]] = mapped_column(JSONB)
    phone: Mapped[str | None] = mapped_column(String(16))
    sip: Mapped[str | None] = mapped_column(String(200))
    presence: Mapped[str] = mapped_column(String(16), default=AgentPresence.OFFLINE)
    presence_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Attempt(Base):
    """One try by an agent to reach the customer, and how it went."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("callback_id", "number"),
        CheckConstraint(_in("outcome", AttemptOutcome), name="outcome"),
        CheckConstraint(
            f"proposed_outcome IS NULL OR {_in('proposed_outcome', AttemptOutcome)}",
            name="proposed_outcome",
        ),
        # A line's result is recorded once, however often the phone system reports it.
        UniqueConstraint("dial_id"),
        CheckConstraint("final OR finalize_at IS NOT NULL", name="finalize_at"),
        # The wrap-up clock reads this to finish proposals nobody confirmed (§10).
        Index("ix_attempts_finalize_at", "finalize_at", postgresql_where=text("NOT final")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    # From the queue's `wrap_up_codes`, if the agent gave one.
    wrap_up_code: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A try dialed through the phone system is first the line's proposal (`final` false):
    # it takes effect (completion, retry, "we tried" SMS) once the agent confirms or
    # corrects it, or by itself at `finalize_at`. One recorded by hand is final at once.
    final: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    finalize_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # What the line said, kept when the agent corrected it.
    proposed_outcome: Mapped[str | None] = mapped_column(String(16))
    dial_id: Mapped[str | None] = mapped_column(ForeignKey("dials.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    callback: Mapped[Callback] = relationship(
        back_populates="attempts", lazy="raise", viewonly=True
    )


class Dial(Base):
    """One call placed through the phone system for a callback: agent first, then customer."""

    __tablename__ = "dials"
    __table_args__ = (
        CheckConstraint(_in("status", DialStatus), name="status"),
        CheckConstraint(_in("dialer", [d for d in Dialer if d != Dialer.NONE]), name="dialer"),
        CheckConstraint(f"line_result IS NULL OR {_in('line_result', LineResult)}", name="result"),
        # The database, not the code, makes a second dial while one runs impossible (409).
        Index(
            "uq_dials_running",
            "callback_id",
            unique=True,
            postgresql_where=text(_in("status", RUNNING_DIAL_STATUSES)),
        ),
        Index("ix_dials_callback_id", "callback_id", "created_at"),
        # The sweeper reads running dials by age: lost requests, dials the line forgot.
        Index(
            "ix_dials_running_updated",
            "updated_at",
            postgresql_where=text(_in("status", RUNNING_DIAL_STATUSES)),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(String(64))
    dialer: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20), default=DialStatus.INITIATED)
    line_result: Mapped[str | None] = mapped_column(String(24))
    # The phone system's id of the agent's leg (Twilio's CallSid), once it gave one.
    provider_call_id: Mapped[str | None] = mapped_column(String(64))
    # Why the agent dialed outside the queue's hours, when they did.
    reason: Mapped[str | None] = mapped_column(Text)
    # Why no call was placed (the phone system's answer, never a number).
    error: Mapped[str | None] = mapped_column(Text)
    agent_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    customer_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DoNotCall(Base):
    """A number that gets no callback and no SMS (kept through erasure: it is the request)."""

    __tablename__ = "do_not_call"

    phone: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProcessedRequest(Base):
    """An idempotent write already done (answered calls, acknowledgements, erasures)."""

    __tablename__ = "processed_requests"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallbackRequest(Base):
    """A `request_id` already answered, and the answer: POST /v1/callbacks is idempotent."""

    __tablename__ = "callback_requests"

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # None when no callback was made (the number is on the do-not-call list).
    callback_id: Mapped[str | None] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    status_code: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_callback_requests_callback_id", "callback_id"),)


class Notification(Base):
    """One message to a customer: written before the provider is called, the send ledger."""

    __tablename__ = "notifications"
    __table_args__ = (
        # The same event never yields two messages on one channel.
        UniqueConstraint("event_key", "channel"),
        CheckConstraint(_in("status", NotificationStatus), name="status"),
        CheckConstraint(_in("channel", NotificationChannel), name="channel"),
        Index("ix_notifications_callback_id", "callback_id"),
        # The daily ceilings count what went to one number or address (`ceilings`).
        Index("ix_notifications_recipient_created", "recipient", "created_at"),
        Index("ix_notifications_status_id", "status", "id"),
        Index(
            "ix_notifications_unfinished",
            "next_attempt_at",
            postgresql_where=text(_in("status", UNFINISHED_NOTIFICATION_STATUSES)),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # None for a message that belongs to no callback (an email-only acknowledgement).
    callback_id: Mapped[str | None] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    event_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.QUEUED)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    # queued/failed: when the next send is due; sending: when the lease of the send runs out.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    callback: Mapped[Callback | None] = relationship(
        back_populates="notifications", lazy="raise", viewonly=True
    )


class SelfServiceChange(Base):
    """A change the customer made through their link, counted against the daily caps."""

    __tablename__ = "self_service_changes"
    __table_args__ = (Index("ix_self_service_changes_callback_at", "callback_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Refusal(Base):
    """Something we declined to do because a ceiling was reached: the record operators read.

    It names the callback (if any), never the number or address it would have gone to.
    """

    __tablename__ = "refusals"
    __table_args__ = (
        Index("ix_refusals_created_at", "created_at"),
        Index("ix_refusals_callback_id", "callback_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    callback_id: Mapped[str | None] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(48))
    # The message refused (`kind` on `channel`), or the self-service action.
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromiseMark(Base):
    """What the at-risk job (§14, `promises.py`) last found about one open callback's promise.

    Each promise is announced at risk once, and back on track once: `at_risk_at` and
    `recovered_at` belong to `promised_by`, and a new promise (a rebooking) starts afresh.
    `offered_at` outlives promises: the customer is offered a later time once per callback.
    """

    __tablename__ = "promise_marks"
    __table_args__ = (Index("ix_promise_marks_queue", "queue", postgresql_where=text("at_risk")),)

    callback_id: Mapped[str] = mapped_column(
        ForeignKey("callbacks.id", ondelete="CASCADE"), primary_key=True
    )
    queue: Mapped[str] = mapped_column(String(40))
    promised_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    at_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    # When the simulation expects the first agent to start it (None: not in the horizon).
    expected_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    at_risk_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recovered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    offered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Survey(Base):
    """One satisfaction question after a final `reached` (§13), and its answer.

    The customer's number and address are the callback's; the survey keeps who reached them
    and the queue, which its events carry for the statistics.
    """

    __tablename__ = "surveys"
    __table_args__ = (
        CheckConstraint(_in("status", SurveyStatus), name="status"),
        CheckConstraint(_in("channel", NotificationChannel), name="channel"),
        CheckConstraint("score IS NULL OR score BETWEEN 1 AND 5", name="score"),
        # One per customer per 30 days is read by number, and replies find the latest by it.
        Index("ix_surveys_phone_created", "phone", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # One survey per callback.
    callback_id: Mapped[str] = mapped_column(
        ForeignKey("callbacks.id", ondelete="CASCADE"), unique=True
    )
    queue: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=SurveyStatus.SCHEDULED)
    notification_id: Mapped[str | None] = mapped_column(String(36))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    score: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NoMarketing(Base):
    """A number that sent STOP (LOPETA, STOPP): no survey goes to it again."""

    __tablename__ = "no_marketing"

    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Voicemail(Base):
    """A message a caller left (§11), keyed on their call: every piece of it updates this row.

    The audio stays with the provider; agents play it through callback (`GET
    /v1/voicemails/{id}/audio`), and erasure deletes it there (`deleted_at`).
    """

    __tablename__ = "voicemails"
    __table_args__ = (
        Index("uq_voicemails_call", "provider", "call_id", unique=True),
        Index("ix_voicemails_phone", "phone"),
        Index("ix_voicemails_callback_id", "callback_id"),
        # The worker's retry sweep reads only the few deletes still owed to the provider.
        Index(
            "ix_voicemails_delete_due_at",
            "delete_due_at",
            postgresql_where=text("delete_due_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[str] = mapped_column(String(200))
    # Not a foreign key: a voicemail outlives nothing but is kept apart from the callback's
    # lifecycle (a do-not-call number gets none, and its voicemail is still kept).
    callback_id: Mapped[str | None] = mapped_column(String(36))
    phone: Mapped[str | None] = mapped_column(String(32))
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    duration: Mapped[int | None] = mapped_column(Integer)
    transcript: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Erasure: the row forgets the person, and the recording is deleted at the provider.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A delete the provider refused (or never answered) is tried again by the worker from
    # `delete_due_at`, `voicemail_delete_max_tries` times in all; then it is given up.
    delete_tries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    delete_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delete_abandoned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CallbackOutbox(OutboxMixin, Base):
    """History events, written in the same transaction as the change they announce."""

    __tablename__ = "outbox"
    __table_args__ = outbox_indexes()
