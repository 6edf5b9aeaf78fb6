"""The words every service shares: statuses, outcomes, channels, directions, event types, languages.

Each is a `StrEnum`, so a member *is* its string: it compares equal to what the database and
the JSON hold, and pydantic and OpenAPI show the allowed values. Spell a status or an outcome
as a member of these, never as a bare literal; `tests/shared/test_vocabulary.py` greps for
literals outside this module and the migrations (which freeze the values of their day).

To add a word: add the member here, then a migration if a CHECK constraint lists the values
(`callback.models` builds its constraints from these enums).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class CallbackStatus(StrEnum):
    """Where a callback is in its life (`services.callback.lifecycle` moves it)."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# A number has at most one callback in these states (callback's partial unique index).
OPEN_STATUSES: tuple[CallbackStatus, ...] = (
    CallbackStatus.PENDING,
    CallbackStatus.SCHEDULED,
    CallbackStatus.IN_PROGRESS,
)
TERMINAL_STATUSES: frozenset[CallbackStatus] = frozenset(CallbackStatus) - frozenset(OPEN_STATUSES)


class AttemptOutcome(StrEnum):
    """What happened when an agent called: what an agent records for one attempt."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"
    DECLINED = "declined"
    # "Call me tomorrow at 10": the agreed time is kept exactly, no "we tried" SMS, and it
    # does not count toward the queue's `max_tries` (§9).
    RESCHEDULED = "rescheduled"


class DialStatus(StrEnum):
    """Where a dial through the phone system is (DESIGN §10); the console shows it live."""

    # Stored, the request to the phone system not yet sent.
    INITIATED = "initiated"
    # The request is out; its answer not yet recorded.
    REQUESTING = "requesting"
    RINGING_AGENT = "ringing_agent"
    RINGING_CUSTOMER = "ringing_customer"
    CONNECTED = "connected"
    ENDED = "ended"
    # The phone system refused the request or could not be reached: no call was placed.
    FAILED = "failed"
    # A request whose fate was lost with the process sending it: never repeated by itself.
    UNKNOWN = "unknown"


# A dial still under way: at most one per callback, and it keeps the claim's lease alive.
RUNNING_DIAL_STATUSES: tuple[DialStatus, ...] = (
    DialStatus.INITIATED,
    DialStatus.REQUESTING,
    DialStatus.RINGING_AGENT,
    DialStatus.RINGING_CUSTOMER,
    DialStatus.CONNECTED,
)


class Dialer(StrEnum):
    """What places the calls (`RINGBACK_DIALER`)."""

    NONE = "none"
    TWILIO = "twilio"
    WEBHOOK = "webhook"


class DialLeg(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


class LegStatus(StrEnum):
    """What the phone system reports of one leg (the webhook dialer's words; Twilio's are
    translated into these by intake)."""

    RINGING = "ringing"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELED = "canceled"
    MACHINE = "machine"
    COMPLETED = "completed"


class LineResult(StrEnum):
    """How a dial ended, as the line tells it; the attempt's proposed outcome follows from it."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    MACHINE = "machine"
    # The customer's number could not be routed: no attempt; two in a row flag the number.
    FAILED = "failed"
    CANCELED = "canceled"
    # The agent's own leg was not answered or the agent did not press 1: no attempt.
    AGENT_NOT_CONNECTED = "agent_not_connected"


class AgentPresence(StrEnum):
    """Where an agent is (§9): an agent known to `/v1/agents` claims only while available."""

    AVAILABLE = "available"
    BREAK = "break"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


class OfferReason(StrEnum):
    """Why a caller waiting in the phone queue is not offered a callback (§11)."""

    # The queue has no hours left today and none tomorrow.
    CLOSED = "closed"
    # `offer.max_waiting` callbacks are already waiting.
    FULL = "full"
    # The estimate lies past `offer.max_wait_minutes`.
    TOO_LATE = "too_late"
    # No number to call: hidden, unreadable or not a person's line.
    WITHHELD = "withheld"
    # The number asked never to be called.
    DO_NOT_CALL = "do_not_call"


class ClosingOutcome(StrEnum):
    """How a closed callback ended (`callbacks.outcome`): an attempt's outcome or what closed it."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"
    DECLINED = "declined"
    REACHED_INBOUND = "reached_inbound"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    CANCELLED_BY_CUSTOMER = "cancelled_by_customer"
    CANCELLED_BY_AGENT = "cancelled_by_agent"
    DO_NOT_CALL = "do_not_call"
    # A premium-rate, shared-cost or other number we never call or text (no callback made).
    NUMBER_NOT_CALLABLE = "number_not_callable"
    ERASED = "erased"
    SLA_BREACHED = "sla_breached"


class NotificationStatus(StrEnum):
    """A message we send: `cancelled` means no longer wanted (a left slot, an erased person)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


# Work still to do: the states the notification sweeper looks at.
UNFINISHED_NOTIFICATION_STATUSES: tuple[NotificationStatus, ...] = (
    NotificationStatus.QUEUED,
    NotificationStatus.SENDING,
    NotificationStatus.FAILED,
)


class NotificationChannel(StrEnum):
    """How we send a customer a message."""

    SMS = "sms"
    EMAIL = "email"


class Channel(StrEnum):
    """The channel a contact came by or went out on, as the contact log records it."""

    PHONE = "phone"
    SMS = "sms"
    EMAIL = "email"
    CHAT = "chat"
    WEB = "web"
    SOCIAL = "social"
    IN_PERSON = "in_person"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


# A language we speak to customers in; every one has a message catalog. A Literal rather than
# an enum: texts are tables keyed by it, and a literal key type-checks as one.
Language = Literal["fi", "sv", "en", "et"]
LANGUAGES: tuple[Language, ...] = get_args(Language)


class EventType(StrEnum):
    """The contact log's own event types; integrations add theirs under an `x-` prefix."""

    MISSED_CALL = "missed_call"
    CALL_ANSWERED = "call_answered"
    CONTACT_REQUEST = "contact_request"
    # §11: the caller asked for a callback while waiting in the phone queue (pressed 1, or
    # the generic webhook's `callback_requested`), and a voicemail they left (the URL only).
    CALLBACK_REQUESTED = "callback_requested"
    VOICEMAIL = "voicemail"
    CALLBACK_CREATED = "callback_created"
    CALLBACK_MERGED = "callback_merged"
    CALLBACK_SCHEDULED = "callback_scheduled"
    CALLBACK_CLAIMED = "callback_claimed"
    CALLBACK_ATTEMPTED = "callback_attempted"
    CALLBACK_COMPLETED = "callback_completed"
    CALLBACK_FAILED = "callback_failed"
    CALLBACK_CANCELLED = "callback_cancelled"
    CALLBACK_EXPIRED = "callback_expired"
    # §14: the at-risk job expects it to start after its `promised_by`; and, later, not.
    CALLBACK_AT_RISK = "callback_at_risk"
    CALLBACK_BACK_ON_TRACK = "callback_back_on_track"
    # §13: a satisfaction survey went out, and the customer's score came back.
    SURVEY_SENT = "survey_sent"
    SURVEY_ANSWERED = "survey_answered"
    NOTIFICATION_SENT = "notification_sent"
    NOTIFICATION_FAILED = "notification_failed"
    CUSTOMER_MERGED = "customer_merged"
    CUSTOMER_ERASED = "customer_erased"
    NOTE = "note"


class ExtensionEventType(StrEnum):
    """Callback's own kinds of event, in the `x-` namespace history stores as they come."""

    # A contact from a number on the do-not-call list: recorded, not called.
    CALLBACK_DECLINED_DNC = "x-callback_declined_dnc"
    # A contact from a number of a type we never call or text (premium rate, ...): recorded.
    CALLBACK_DECLINED_NUMBER_TYPE = "x-callback_declined_number_type"
    # An email-only contact that got an email acknowledgement.
    CONTACT_ACKNOWLEDGED = "x-contact_acknowledged"
    # An inbound SMS that is not a survey score (a question, a comment, STOP): kept as it came.
    SMS_RECEIVED = "x-sms_received"


class WebhookEventType(StrEnum):
    """The event names webhooks carry out to CRMs (DESIGN §12); `event_names` maps them."""

    CALLBACK_CREATED = "callback.created"
    CALLBACK_SCHEDULED = "callback.scheduled"
    CALLBACK_CLAIMED = "callback.claimed"
    CALLBACK_ATTEMPTED = "callback.attempted"
    CALLBACK_COMPLETED = "callback.completed"
    CALLBACK_FAILED = "callback.failed"
    CALLBACK_CANCELLED = "callback.cancelled"
    CALLBACK_EXPIRED = "callback.expired"
    CALLBACK_MERGED = "callback.merged"
    CALLBACK_AT_RISK = "callback.at_risk"
    CALLBACK_BACK_ON_TRACK = "callback.back_on_track"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    VOICEMAIL_RECEIVED = "voicemail.received"
    SURVEY_ANSWERED = "survey.answered"
    CUSTOMER_MERGED = "customer.merged"
    CUSTOMER_ERASED = "customer.erased"


class WebhookDisabledReason(StrEnum):
    """Why ringback turned a webhook endpoint off by itself (an operator's PATCH has none)."""

    # The subscriber answered 410 Gone.
    GONE = "gone"
    # Every delivery failed for `FAILING_DAYS_BEFORE_DISABLE` days.
    FAILING = "failing"


class WebhookTryResult(StrEnum):
    """How one try of a webhook delivery ended (a metric's label, a log field)."""

    DELIVERED = "delivered"
    # Any other answer, or the connection failed.
    FAILED = "failed"
    # 410: the endpoint is turned off.
    GONE = "gone"
    # The URL resolved to an address webhooks may not reach.
    REFUSED = "refused"
    TIMEOUT = "timeout"


class OutboxRowStatus(StrEnum):
    """Where an outbox row is, read from the relay's columns (`delivered_at`, `dead_at`)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class IdentityKind(StrEnum):
    """What history knows a customer by."""

    PHONE = "phone"
    EMAIL = "email"


class InboundStatus(StrEnum):
    """What intake made of a request it kept (`intake.inbound.status`)."""

    # Forwarded to callback for a callback.
    ACCEPTED = "accepted"
    # Kept and put on the timeline, nothing to call back (answered, withheld, email only).
    RECORDED = "recorded"
    # The same call or request again: the answer names the first one.
    DUPLICATE = "duplicate"
    # Authentic but unusable, kept for an operator; `replayed` once parsed again.
    REJECTED = "rejected"
    REPLAYED = "replayed"


class GoalVerdict(StrEnum):
    """How a measured figure stands against its queue's goal (§13): the wallboard's colour."""

    MET = "met"
    # Short of the goal by no more than the wallboard's margin: amber, not yet red.
    NEAR = "near"
    MISSED = "missed"


class SurveyStatus(StrEnum):
    """Where a satisfaction survey is (§13): one question, one answer at most."""

    # Waiting for its delay or the end of the queue's SMS quiet hours.
    SCHEDULED = "scheduled"
    SENT = "sent"
    ANSWERED = "answered"
    # STOP (or its fi/sv words) from the number, or no channel allowed it when it was due.
    WITHDRAWN = "withdrawn"


class RecordingDeleteResult(StrEnum):
    """What came of one try to delete an erased person's recording at the provider (§11)."""

    # Gone (a 404 counts: the provider no longer has it).
    DELETED = "deleted"
    # Refused, unreachable or not set up: tried again after a backoff.
    RETRYING = "retrying"
    # The last try failed: nobody tries again; an operator deletes it by hand.
    ABANDONED = "abandoned"
