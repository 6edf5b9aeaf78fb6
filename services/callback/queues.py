"""Queues (§9): a team's line, its rules, and which queue a contact belongs to.

A queue's rules are read once per operation as `QueueRules`: the zone, the plan, the SLA,
the retry policy per outcome and the language wait, each falling back to the site default
when the queue leaves it out. `default` always exists; `PUT/GET /v1/capacity` are its plan.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import inputs, repository
from services.callback.capacity import CapacityPlan, next_business_moment
from services.callback.models import Queue
from services.callback.settings import CallbackSettings
from shared.contracts import Language
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.phone import normalize
from shared.vocabulary import AttemptOutcome

log = structlog.get_logger("ringback.callback.queues")

DEFAULT = "default"
KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# The outcomes a queue's retry policy may give their own waits.
RETRIED = (AttemptOutcome.NO_ANSWER, AttemptOutcome.BUSY, AttemptOutcome.VOICEMAIL)

Waits = Annotated[
    list[Annotated[int, Field(ge=1, le=7 * 24 * 60)]], Field(min_length=1, max_length=20)
]
E164 = Annotated[str, Field(max_length=16)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Waits in minutes after the n-th try of each outcome (the last repeats), and the tries."""

    no_answer: Waits | None = None
    busy: Waits | None = None
    voicemail: Waits | None = None
    max_tries: Annotated[int, Field(ge=1, le=20)] | None = None


class OfferPolicy(_Strict):
    """The callback offered to a caller still waiting in the phone queue (§11)."""

    max_waiting: Annotated[int, Field(ge=0, le=100_000)] | None = None
    max_wait_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] | None = None
    min_wait_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None


class Goals(_Strict):
    """The queue's service goals (§13)."""

    answer_within_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] | None = None
    sla_share: Annotated[float, Field(ge=0, le=1)] | None = None
    csat_average: Annotated[float, Field(ge=1, le=5)] | None = None
    reach_rate: Annotated[float, Field(ge=0, le=1)] | None = None


class Survey(_Strict):
    """One satisfaction question `delay_minutes` after a final `reached` (§13)."""

    enabled: bool = False
    delay_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] = 10


class Dialing(_Strict):
    """How the phone system dials this queue's customers (§10)."""

    # Off by default: with the agent first, the customer would hear silence while the line
    # decides whether a person or a machine answered.
    machine_detection: bool = False


class QuietHours(_Strict):
    """Local hours in which no reminder, "we tried", survey or at-risk SMS goes out (it waits
    for `end`; a confirmation never waits). Start equal to end: none."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("write times as HH:MM (00:00-23:59)")
        return value


class QueueIn(_Strict):
    """`PUT /v1/queues/{key}`: every field but `name` takes the site default when left out."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    numbers: Annotated[list[E164], Field(max_length=100)] = Field(default_factory=list)
    languages: Annotated[list[Language], Field(max_length=10)] = Field(default_factory=list)
    timezone: Annotated[str, Field(max_length=64)] | None = None
    sla_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] | None = None
    caller_id: E164 | None = None
    capacity: CapacityPlan | None = None
    retry: RetryPolicy | None = None
    offer: OfferPolicy | None = None
    goals: Goals | None = None
    survey: Survey | None = None
    sms_quiet_hours: QuietHours | None = None
    dialing: Dialing | None = None
    wrap_up_codes: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]], Field(max_length=100)
    ] = Field(default_factory=list)
    language_wait_minutes: Annotated[int, Field(ge=0, le=7 * 24 * 60)] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not an IANA time zone (e.g. Europe/Helsinki)") from None
        return value

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        for number in value:
            _e164(number)
        if len(set(value)) != len(value):
            raise ValueError("a number is listed twice")
        return value

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        return _e164(value) if value is not None else None


def _e164(number: str) -> str:
    # Exactly E.164, as the phone system reports what was dialed: no notation to guess at.
    if normalize(number, "ZZ") != number:
        raise ValueError(f"{number!r} is not a valid number in E.164 form (+358923123456)")
    return number


class QueueOut(QueueIn):
    key: str
    # The zone in force: the queue's own, or the site's.
    effective_timezone: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class QueueRules:
    """A queue's rules in force: its own where it set them, the site's elsewhere."""

    key: str
    zone: ZoneInfo
    plan: CapacityPlan | None
    sla: timedelta
    languages: tuple[str, ...]
    retry_waits: dict[str, tuple[int, ...]]
    max_tries: int
    language_wait: timedelta
    wrap_up_codes: frozenset[str]
    caller_id: str | None
    # Local (start, end) in which no SMS goes out; None: SMS at any hour.
    sms_quiet_hours: tuple[time, time] | None = None
    # The numbers customers call: the first is the caller id when none is set.
    numbers: tuple[str, ...] = ()
    machine_detection: bool = False
    # A survey this long after a final `reached` (§13); None: the queue sends none.
    survey_delay: timedelta | None = None

    def shown_number(self) -> str | None:
        """What the customer sees when we call: the queue's caller id, else its first number."""
        return self.caller_id or (self.numbers[0] if self.numbers else None)

    def open_at(self, moment: datetime) -> bool:
        """Whether `moment` falls within the queue's hours (no plan: no hours to keep)."""
        return self.plan is None or next_business_moment(self.plan, moment) == moment

    def sms_send_at(self, moment: datetime) -> datetime:
        """`moment`, or the end of the queue's SMS quiet hours if it falls inside them."""
        if self.sms_quiet_hours is None:
            return moment
        start, end = self.sms_quiet_hours
        local = moment.astimezone(self.zone)
        clock = local.time()
        quiet = start <= clock < end if start < end else (clock >= start or clock < end)
        if not quiet:
            return moment
        day = local.date() if clock < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=self.zone).astimezone(UTC)

    def retry_wait(self, outcome: str, tries_of_outcome: int) -> timedelta:
        """The wait after the n-th try of `outcome` (1-based); the last listed wait repeats."""
        waits = self.retry_waits[outcome]
        return timedelta(minutes=waits[min(tries_of_outcome, len(waits)) - 1])


def _plan(raw: Any) -> CapacityPlan | None:
    if raw is None:
        return None
    return _plan_of(json.dumps(raw, sort_keys=True, separators=(",", ":")))


# Validating a stored plan cost more than the booking's look-up of it; a plan is frozen, so
# each distinct one is validated once per process (keyed on its JSON, so any change shows).
@lru_cache(maxsize=256)
def _plan_of(stored: str) -> CapacityPlan | None:
    try:
        return CapacityPlan.model_validate(json.loads(stored))
    except ValidationError:
        # Stored by an older version with other rules: no slots rather than a 500.
        return None


def rules_of(queue: Queue | None, settings: CallbackSettings) -> QueueRules:
    """What `queue` says, with the site's settings where it says nothing (None: all site)."""
    config = queue.config if queue is not None else {}
    retry = config.get("retry") or {}
    site_waits = tuple(settings.retry_delays_minutes)
    return QueueRules(
        key=queue.key if queue is not None else DEFAULT,
        zone=ZoneInfo(zone_name(queue, settings)),
        plan=_plan(config.get("capacity")),
        sla=timedelta(minutes=config.get("sla_minutes") or settings.sla_minutes),
        languages=tuple(config.get("languages") or ()),
        retry_waits={o: tuple(retry.get(o) or site_waits) for o in RETRIED},
        max_tries=retry.get("max_tries") or settings.retry_max_tries,
        language_wait=timedelta(minutes=language_wait_minutes(queue, settings)),
        wrap_up_codes=frozenset(config.get("wrap_up_codes") or ()),
        caller_id=config.get("caller_id"),
        sms_quiet_hours=_quiet(config.get("sms_quiet_hours"), settings.sms_quiet_hours),
        numbers=tuple(config.get("numbers") or ()),
        machine_detection=bool((config.get("dialing") or {}).get("machine_detection")),
        survey_delay=_survey_delay(config.get("survey")),
    )


def _quiet(raw: Any, site: str) -> tuple[time, time] | None:
    """The queue's own quiet hours, else the site's (`RINGBACK_SMS_QUIET_HOURS`, 21:00-08:00).

    A queue that sets start equal to end has none at all; `off` on the site means none either.
    """
    if raw:
        start, end = time.fromisoformat(raw["start"]), time.fromisoformat(raw["end"])
    elif site == "off":
        return None
    else:
        first, _, last = site.partition("-")
        start, end = time.fromisoformat(first), time.fromisoformat(last)
    return None if start == end else (start, end)


def _survey_delay(raw: Any) -> timedelta | None:
    if not raw or not raw.get("enabled"):
        return None
    return timedelta(minutes=int(raw.get("delay_minutes", Survey().delay_minutes)))


def zone_name(queue: Queue | None, settings: CallbackSettings) -> str:
    return (queue.timezone if queue is not None else None) or settings.site_timezone


def language_wait_minutes(queue: Queue | None, settings: CallbackSettings) -> int:
    own = queue.language_wait_minutes if queue is not None else None
    return own if own is not None else settings.language_wait_minutes


async def rules(session: AsyncSession, settings: CallbackSettings, key: str) -> QueueRules:
    return rules_of(await repository.get_queue(session, key), settings)


# ----------------------------------------------------------------------------- which queue


@dataclass(frozen=True, slots=True)
class Choice:
    key: str
    # Why a contact that named a queue is not in it (kept on the callback).
    reason: str | None = None
    # The queue's row, read with the choice: its rules need no look-up of their own (None:
    # `default` has no row, the site's rules).
    queue: Queue | None = None
    # The id of the number's open callback in this queue, row-locked, when `choose` was given
    # the number (None: it has none).
    open_id: str | None = None
    # Asked in the same statement when `choose` was given a create's request id: the answer
    # stored for that request (None: not answered yet), and whether the number is on the
    # do-not-call list.
    answer: dict[str, Any] | None = None
    do_not_call: bool = False

    def rules(self, settings: CallbackSettings) -> QueueRules:
        return rules_of(self.queue, settings)


async def choose(
    session: AsyncSession,
    *,
    named: str | None,
    dialed: str | None,
    phone: str | None = None,
    request_id: str | None = None,
) -> Choice:
    """The contact's queue: the one it names, else the one owning the number dialed, else
    `default` (an unknown key is not an error; the reason is kept). With `phone`, the
    number's open callback in it too (`Choice.open_id`), and with a create's `request_id`
    its stored answer and the do-not-call list, in the same statement."""
    read = await repository.choose_queue(
        session, named=named, dialed=dialed, fallback=DEFAULT, phone=phone, request_id=request_id
    )
    queue = read.queue
    reason = None
    if named and (queue is None or queue.key != named):
        reason = f"no queue is called {named[:60]!r}"
    key = queue.key if queue is not None else DEFAULT
    return Choice(key, reason, queue, read.open_id, read.answer, read.do_not_call)


# ----------------------------------------------------------------------------- managing queues


def _out(queue: Queue, settings: CallbackSettings) -> QueueOut:
    return QueueOut.model_validate(
        {
            **queue.config,
            "key": queue.key,
            "effective_timezone": zone_name(queue, settings),
            "created_at": queue.created_at,
            "updated_at": queue.updated_at,
        }
    )


def _config(body: QueueIn, settings: CallbackSettings, key: str) -> dict[str, Any]:
    """The body as stored: a plan without a zone takes the queue's; one with another is 422."""
    zone = body.timezone or settings.site_timezone
    config = body.model_dump(mode="json", exclude_none=True)
    if body.capacity is not None:
        if "timezone" in body.capacity.model_fields_set and body.capacity.timezone != zone:
            raise inputs.invalid(
                ["body", "capacity", "timezone"],
                f"the queue's zone ({zone}) governs it; leave the plan's out or make it the same",
            )
        config["capacity"] = {**config["capacity"], "timezone": zone}
    return config


async def put_queue(
    *, session: AsyncSession, settings: CallbackSettings, key: str, body: QueueIn
) -> tuple[bool, QueueOut]:
    """Create or replace `key` (idempotent); True when it was created."""
    now = utcnow()
    await repository.lock(session, "queues", "numbers")
    for number in body.numbers:
        owner = await repository.queue_owning(session, number)
        if owner is not None and owner != key:
            raise inputs.invalid(
                ["body", "numbers"], f"{number} already belongs to queue {owner!r}"
            )
    config = _config(body, settings, key)
    queue = await repository.get_queue(session, key, lock=True)
    created = queue is None
    if queue is None:
        queue = Queue(key=key, created_at=now)
        session.add(queue)
    queue.name = body.name
    queue.timezone = body.timezone
    queue.language_wait_minutes = body.language_wait_minutes
    queue.config = config
    queue.updated_at = now
    await session.flush()
    await repository.set_queue_numbers(session, key, body.numbers)
    log.info("callback.queue.put", queue=key, created=created)
    return created, _out(queue, settings)


async def ensure_default(session: AsyncSession) -> None:
    """`default` always exists: the migrations create it; this puts it back if it went."""
    await repository.ensure_queue(session, DEFAULT, "Default")


async def get_queue(*, session: AsyncSession, settings: CallbackSettings, key: str) -> QueueOut:
    if key == DEFAULT:
        await ensure_default(session)
    queue = await repository.get_queue(session, key)
    if queue is None:
        raise NotFound(f"No queue is called {key!r}.")
    return _out(queue, settings)


async def list_queues(*, session: AsyncSession, settings: CallbackSettings) -> list[QueueOut]:
    await ensure_default(session)
    return [_out(q, settings) for q in await repository.all_queues(session)]


async def delete_queue(*, session: AsyncSession, key: str) -> None:
    if key == DEFAULT:
        raise Conflict("The default queue always exists; it cannot be deleted.")
    queue = await repository.get_queue(session, key, lock=True)
    if queue is None:
        raise NotFound(f"No queue is called {key!r}.")
    open_count = await repository.open_in_queue(session, key)
    if open_count:
        raise Conflict(
            f"Queue {key!r} has {open_count} open callbacks; move or close them first.",
            extra={"open_callbacks": open_count},
        )
    await session.delete(queue)
    log.info("callback.queue.deleted", queue=key)


# ----------------------------------------------------------------------------- v1's capacity


async def put_default_plan(
    *, session: AsyncSession, settings: CallbackSettings, plan: CapacityPlan
) -> CapacityPlan:
    """`PUT /v1/capacity`, as in v1: the plan's zone becomes the default queue's zone."""
    await ensure_default(session)
    queue = await repository.get_queue(session, DEFAULT, lock=True)
    assert queue is not None, "the migrations create the default queue"
    queue.timezone = plan.timezone
    queue.config = {**queue.config, "capacity": plan.model_dump(mode="json")}
    queue.updated_at = utcnow()
    log.info("callback.capacity.updated", slot_minutes=plan.slot_minutes, timezone=plan.timezone)
    return plan


async def get_plan(
    *, session: AsyncSession, settings: CallbackSettings, key: str = DEFAULT
) -> CapacityPlan:
    found = (await rules(session, settings, key)).plan
    if found is None:
        raise NotFound("No capacity plan has been set; PUT /v1/capacity sets one.")
    return found
