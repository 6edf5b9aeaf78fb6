"""Dialing through the phone system (§10): starting a dial, placing it exactly once, and
what the line's reports make of it (`dial_rules`), up to the attempt it proposes.

Never two calls placed by us: the dial row is stored (`initiated`) and committed before the
phone system is asked, and the job that asks first moves it to `requesting` and commits. A
job that finds it `requesting` is a rerun after a crash mid-request: the request's fate is
unknown, and it is not repeated (the dial becomes `unknown`; the agent may dial again).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.callback import agents, dial_rules, queues, repository
from services.callback.dialers.base import DialRequest, FateUnknown, NotPlaced, PhoneDialer
from services.callback.jobs import DialQueue
from services.callback.models import Callback, Dial
from services.callback.settings import CallbackSettings
from shared.contracts import DialBridge, DialEvent
from shared.db import after_commit, utcnow
from shared.errors import Conflict, NotFound, ServiceUnavailable, Unprocessable
from shared.phone import is_callable, region_of
from shared.vocabulary import (
    RUNNING_DIAL_STATUSES,
    CallbackStatus,
    Dialer,
    DialLeg,
    DialStatus,
    LineResult,
)

log = structlog.get_logger("ringback.callback")

# Why a callback needs a person's eye: the number could not be routed twice in a row.
CHECK_NUMBER_FLAG = "check_number"
# Running dials the phone system has taken on: it reports on these.
_ON_THE_LINE = [
    s for s in RUNNING_DIAL_STATUSES if s not in (DialStatus.INITIATED, DialStatus.REQUESTING)
]
ANSWER_LOST = "the phone system's answer to the request was lost; dial again if needed"


def _refusal(reason: str, detail: str, *, status: int) -> Conflict | Unprocessable:
    error_type = Conflict if status == 409 else Unprocessable
    return error_type(detail, slug=reason, extra={"reason": reason})


async def start(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    queue: DialQueue,
    callback_id: str,
    agent_id: str,
    reason: str | None,
    now: datetime | None = None,
) -> Dial:
    """Store a dial for the agent holding the claim; the worker places it after commit."""
    now = now or utcnow()
    # Whose callback it is comes first: a 404 or 409 tells the agent more than the 503 does.
    callback = await agents.claimed_by(session, callback_id, agent_id)
    if settings.dialer == Dialer.NONE:
        raise ServiceUnavailable(
            "No dialer is configured (RINGBACK_DIALER=none): call the number yourself.",
            slug="no-dialer",
        )
    await agents.refuse_while_wrapping_up(session, callback.id)
    running = await repository.running_dial(session, callback.id)
    if running is not None:
        raise Conflict(
            "A call for this callback is already under way.",
            slug="dial-running",
            extra={"reason": "dial-running", "dial_id": running.id, "dial_status": running.status},
        )
    rules = await queues.rules(session, settings, callback.queue)
    await _refuse_to_dial(session, settings, callback, rules, reason=reason, now=now)
    agent = await repository.get_agent(session, agent_id)
    if settings.dialer == Dialer.TWILIO and (agent is None or not (agent.phone or agent.sip)):
        raise _refusal(
            "agent-unreachable",
            f"Agent {agent_id} has no phone number or SIP address to ring first "
            "(PUT /v1/agents/{agent_id}).",
            status=409,
        )
    dial = Dial(
        callback_id=callback.id,
        agent_id=agent_id,
        dialer=settings.dialer,
        status=DialStatus.INITIATED,
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    session.add(dial)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        # Two presses at once: the database lets one dial run (`uq_dials_running`).
        raise Conflict(
            "A call for this callback is already under way.",
            slug="dial-running",
            extra={"reason": "dial-running"},
        ) from None
    _renew_lease(callback, settings, now)

    async def place() -> None:
        await queue.enqueue_dial(dial.id)

    after_commit(session, place)
    log.info("callback.dial.started", callback_id=callback.id, dial_id=dial.id, agent_id=agent_id)
    return dial


async def _refuse_to_dial(
    session: AsyncSession,
    settings: CallbackSettings,
    callback: Callback,
    rules: queues.QueueRules,
    *,
    reason: str | None,
    now: datetime,
) -> None:
    """Each refusal names its reason (§10); checked again when the agent presses 1."""
    if await repository.is_do_not_call(session, callback.phone):
        raise _refusal("do-not-call", "This number is on the do-not-call list.", status=409)
    if not is_callable(callback.phone):
        raise _refusal(
            "number-not-callable",
            "This number is neither a mobile nor a fixed line: we do not dial it.",
            status=422,
        )
    if region_of(callback.phone) not in settings.dial_allowed_regions:
        raise _refusal(
            "country-not-allowed",
            "This number's country is not one we dial (RINGBACK_DIAL_ALLOWED_REGIONS).",
            status=422,
        )
    if rules.shown_number() is None:
        raise _refusal(
            "no-caller-id",
            f"Queue {rules.key!r} has no caller id or number to show the customer.",
            status=409,
        )
    if not rules.open_at(now) and not reason:
        raise _refusal(
            "outside-hours",
            f"Queue {rules.key!r} is closed now: give a reason to call all the same.",
            status=409,
        )


def _renew_lease(callback: Callback, settings: CallbackSettings, now: datetime) -> None:
    # A running dial (and its wrap-up) keeps the claim: never handed on mid-call.
    lease = now + timedelta(minutes=settings.claim_lease_minutes)
    if callback.lease_expires_at is None or callback.lease_expires_at < lease:
        callback.lease_expires_at = lease


# ----------------------------------------------------------------------------- placing


async def place(
    *, session: AsyncSession, settings: CallbackSettings, dialer: PhoneDialer, dial_id: str
) -> DialStatus:
    """The worker's job: ask the phone system once. Commits in between, by design."""
    dial = await repository.lock_dial(session, dial_id)
    if dial is None:
        return DialStatus.UNKNOWN
    if dial.status == DialStatus.REQUESTING:
        # A run before this one died between asking and recording: perhaps a call exists.
        _stop(dial, DialStatus.UNKNOWN, ANSWER_LOST)
        await session.commit()
        log.warning("callback.dial.fate_unknown", dial_id=dial.id)
        return DialStatus.UNKNOWN
    if dial.status != DialStatus.INITIATED:
        return DialStatus(dial.status)
    request = await _request_for(session, settings, dial)
    if request is None:
        _stop(dial, DialStatus.FAILED, "the callback is no longer this agent's to call")
        await session.commit()
        return DialStatus.FAILED
    dial.status = DialStatus.REQUESTING
    dial.updated_at = utcnow()
    await session.commit()
    try:
        call_id = await dialer.place(request)
    except NotPlaced as exc:
        return await _record_placing(session, dial_id, DialStatus.FAILED, error=str(exc))
    except FateUnknown as exc:
        return await _record_placing(session, dial_id, DialStatus.UNKNOWN, error=str(exc))
    return await _record_placing(session, dial_id, DialStatus.RINGING_AGENT, call_id=call_id)


async def _request_for(
    session: AsyncSession, settings: CallbackSettings, dial: Dial
) -> DialRequest | None:
    callback = await session.get(Callback, dial.callback_id)
    if (
        callback is None
        or callback.status != CallbackStatus.IN_PROGRESS
        or callback.agent_id != dial.agent_id
    ):
        return None
    rules = await queues.rules(session, settings, callback.queue)
    agent = await repository.get_agent(session, dial.agent_id)
    caller_id = rules.shown_number()
    assert caller_id is not None  # refused at the start otherwise
    return DialRequest(
        dial_id=dial.id,
        callback_id=callback.id,
        agent_id=dial.agent_id,
        agent_phone=agent.phone if agent else None,
        agent_sip=agent.sip if agent else None,
        customer_phone=callback.phone,
        caller_id=caller_id,
        machine_detection=rules.machine_detection,
    )


async def _record_placing(
    session: AsyncSession,
    dial_id: str,
    status: DialStatus,
    *,
    error: str | None = None,
    call_id: str | None = None,
) -> DialStatus:
    dial = await repository.lock_dial(session, dial_id)
    assert dial is not None
    if call_id is not None:
        dial.provider_call_id = call_id
    if status == DialStatus.RINGING_AGENT:
        # A report of the agent's leg may have moved it further already: never backwards.
        if dial.status == DialStatus.REQUESTING:
            dial.status = status
            dial.updated_at = utcnow()
    elif dial.status == DialStatus.REQUESTING:
        _stop(dial, status, error)
    await session.commit()
    log.info("callback.dial.placed", dial_id=dial.id, status=dial.status)
    return DialStatus(dial.status)


def _stop(dial: Dial, status: DialStatus, error: str | None) -> None:
    now = utcnow()
    dial.status = status
    dial.error = error
    dial.ended_at = now
    dial.updated_at = now


# ----------------------------------------------------------------------------- the line's reports


def _state(dial: Dial) -> dial_rules.DialState:
    return dial_rules.DialState(
        dialer=Dialer(dial.dialer),
        status=DialStatus(dial.status),
        agent_confirmed=dial.agent_confirmed_at is not None,
        customer_answered=dial.customer_answered_at is not None,
        machine=dial.line_result == LineResult.MACHINE,
    )


async def _locked_pair(session: AsyncSession, dial_id: str) -> tuple[Callback, Dial]:
    """The dial and its callback, locked in the order every writer takes them."""
    callback_id = await repository.callback_of_dial(session, dial_id)
    if callback_id is None:
        raise NotFound("No dial has this id.")
    callback = await repository.lock_callback(session, callback_id)
    dial = await repository.lock_dial(session, dial_id)
    assert callback is not None
    assert dial is not None
    return callback, dial


async def report(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    queue: DialQueue,
    dial_id: str,
    event: DialEvent,
    now: datetime | None = None,
) -> Dial:
    """Apply one report of a leg; a repeated or stale report changes nothing."""
    now = now or utcnow()
    callback, dial = await _locked_pair(session, dial_id)
    if event.call_id and event.leg == DialLeg.AGENT and dial.provider_call_id is None:
        dial.provider_call_id = event.call_id
    change = dial_rules.apply(_state(dial), event.leg, event.status)
    if change is None:
        return dial
    await _apply(session, settings, queue, callback, dial, change, event=event, now=now)
    return dial


async def connect(
    *, session: AsyncSession, settings: CallbackSettings, dial_id: str, now: datetime | None = None
) -> DialBridge:
    """The agent pressed 1: whom to ring now. 409 when that call must not happen any more."""
    now = now or utcnow()
    callback, dial = await _locked_pair(session, dial_id)
    if not dial_rules.is_running(DialStatus(dial.status)):
        raise Conflict("This dial has ended.", slug="dial-ended")
    if callback.status != CallbackStatus.IN_PROGRESS or callback.agent_id != dial.agent_id:
        raise Conflict("The callback is no longer this agent's to call.", slug="not-claimant")
    if await repository.is_do_not_call(session, callback.phone):
        raise Conflict("This number went on the do-not-call list.", slug="do-not-call")
    rules = await queues.rules(session, settings, callback.queue)
    change = dial_rules.confirmed(_state(dial))
    if change is not None:
        await _apply(session, settings, None, callback, dial, change, event=None, now=now)
    caller_id = rules.shown_number()
    assert caller_id is not None
    return DialBridge(
        customer_phone=callback.phone,
        caller_id=caller_id,
        machine_detection=rules.machine_detection,
        ring_seconds=settings.customer_ring_seconds,
    )


async def _apply(
    session: AsyncSession,
    settings: CallbackSettings,
    queue: DialQueue | None,
    callback: Callback,
    dial: Dial,
    change: dial_rules.Change,
    *,
    event: DialEvent | None,
    now: datetime,
) -> None:
    when = event.occurred_at if event is not None else now
    dial.status = change.status
    dial.updated_at = now
    if change.agent_confirmed and dial.agent_confirmed_at is None:
        dial.agent_confirmed_at = when
    if change.customer_answered and dial.customer_answered_at is None:
        dial.customer_answered_at = when
    if change.machine:
        dial.line_result = LineResult.MACHINE
    held = callback.status == CallbackStatus.IN_PROGRESS and callback.agent_id == dial.agent_id
    if held:
        _renew_lease(callback, settings, now)
    if not change.ended:
        return
    assert change.result is not None
    dial.line_result = change.result
    dial.ended_at = when
    if event is not None and event.duration is not None:
        dial.duration_seconds = event.duration
    log.info("callback.dial.ended", dial_id=dial.id, result=change.result)
    if change.result == LineResult.FAILED:
        await _flag_if_failing(session, callback, dial)
    outcome = dial_rules.LINE_OUTCOMES[change.result]
    if outcome is None or not held or queue is None:
        return
    finalize_at = dial_rules.finalize_at(now, settings.wrap_up_seconds)
    attempt = await agents.new_attempt(
        session,
        callback,
        agent_id=dial.agent_id,
        outcome=outcome,
        note=None,
        wrap_up_code=None,
        now=now,
        final=False,
        finalize_at=finalize_at,
        dial_id=dial.id,
    )
    # The claim outlasts the wrap-up, so nobody else takes the callback mid-sentence.
    wrap_up_end = finalize_at + timedelta(minutes=1)
    if callback.lease_expires_at is None or callback.lease_expires_at < wrap_up_end:
        callback.lease_expires_at = wrap_up_end

    async def finalize_later() -> None:
        await queue.enqueue_finalize(attempt.id, finalize_at)

    after_commit(session, finalize_later)


async def _flag_if_failing(session: AsyncSession, callback: Callback, dial: Dial) -> None:
    """Two dials in a row the number could not be routed: an agent should check it."""
    previous = await repository.previous_line_result(session, callback.id, dial.id)
    if previous == LineResult.FAILED and callback.flag is None:
        callback.flag = CHECK_NUMBER_FLAG
        log.warning("callback.dial.number_flagged", callback_id=callback.id)


# ----------------------------------------------------------------------------- the sweep


async def sweep(
    *, session: AsyncSession, settings: CallbackSettings, now: datetime | None = None
) -> tuple[list[str], int]:
    """Dials never placed (their job was lost) to place again, and how many fell silent.

    An `initiated` dial has asked nobody yet, so placing it again is safe. A running dial the
    phone system has said nothing of for `dial_stale_minutes` becomes `unknown`, freeing the
    callback for another dial.
    """
    now = now or utcnow()
    unplaced = await repository.unplaced_dials(session, older_than=now - timedelta(seconds=30))
    # A job that asked outlives its own timeout never: past it, the asking process is gone.
    lost = await repository.dials_in(
        session,
        [DialStatus.REQUESTING],
        older_than=now - timedelta(seconds=settings.job_timeout_seconds + 10),
    )
    for dial in lost:
        _stop(dial, DialStatus.UNKNOWN, ANSWER_LOST)
    stale = await repository.dials_in(
        session,
        [
            s
            for s in RUNNING_DIAL_STATUSES
            if s not in (DialStatus.INITIATED, DialStatus.REQUESTING)
        ],
        older_than=now - timedelta(minutes=settings.dial_stale_minutes),
    )
    for dial in stale:
        _stop(dial, DialStatus.UNKNOWN, "the phone system stopped reporting this call")
    await _keep_leases(session, settings, now)
    silent = len(lost) + len(stale)
    return list(unplaced), silent


async def _keep_leases(session: AsyncSession, settings: CallbackSettings, now: datetime) -> None:
    """A call can outlast a lease with nothing reported in between (a long conversation): while
    its dial runs, the sweep keeps the claim from lapsing, so nobody else takes it mid-call."""
    lease = now + timedelta(minutes=settings.claim_lease_minutes)
    for callback in await repository.calls_outlasting_leases(session, lease=lease):
        callback.lease_expires_at = lease
