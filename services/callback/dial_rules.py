"""How a dial moves when the phone system reports a leg, and what its end proposes (§10).

Pure: the database and the phone system stay in `dialing`. Reports come twice or out of
order (Twilio retries, and its status and action callbacks race), so a dial only ever moves
forward, and an ended dial takes no further report: one result, at most one attempt.

    initiated ──► requesting ──► ringing_agent ──► ringing_customer ──► connected ──► ended
        │              │               │                  │                            ▲
        │              └──► failed     └──────────────────┴────────────────────────────┘
        └──────────────────► unknown (a request whose fate was lost; never repeated)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.vocabulary import (
    RUNNING_DIAL_STATUSES,
    AttemptOutcome,
    Dialer,
    DialLeg,
    DialStatus,
    LegStatus,
    LineResult,
)

# The attempt a line's result proposes; None: no attempt (the claim stays with the agent).
LINE_OUTCOMES: dict[LineResult, AttemptOutcome | None] = {
    LineResult.ANSWERED: AttemptOutcome.REACHED,
    LineResult.NO_ANSWER: AttemptOutcome.NO_ANSWER,
    LineResult.BUSY: AttemptOutcome.BUSY,
    LineResult.MACHINE: AttemptOutcome.VOICEMAIL,
    # The number could not be routed: nobody was tried. Two in a row flag it (`dialing`).
    LineResult.FAILED: None,
    LineResult.CANCELED: None,
    LineResult.AGENT_NOT_CONNECTED: None,
}

# A customer's leg that ended so tells the line's result by itself.
_CUSTOMER_ENDS: dict[LegStatus, LineResult] = {
    LegStatus.NO_ANSWER: LineResult.NO_ANSWER,
    LegStatus.BUSY: LineResult.BUSY,
    LegStatus.FAILED: LineResult.FAILED,
    LegStatus.CANCELED: LineResult.CANCELED,
}
_AGENT_ENDS = frozenset(
    {
        LegStatus.NO_ANSWER,
        LegStatus.BUSY,
        LegStatus.FAILED,
        LegStatus.CANCELED,
        LegStatus.COMPLETED,
    }
)
# Forward only: a late "ringing" never undoes "connected".
_ORDER = {status: rank for rank, status in enumerate(RUNNING_DIAL_STATUSES)}


@dataclass(frozen=True, slots=True)
class DialState:
    """What a report is read against: the dial as stored."""

    dialer: Dialer
    status: DialStatus
    agent_confirmed: bool
    customer_answered: bool
    # A machine answered the customer's leg (detection on); the call may still be going on.
    machine: bool


@dataclass(frozen=True, slots=True)
class Change:
    """What a report does to a dial; `result` set means the dial ended with it."""

    status: DialStatus
    agent_confirmed: bool = False
    customer_answered: bool = False
    machine: bool = False
    result: LineResult | None = None

    @property
    def ended(self) -> bool:
        return self.result is not None


def is_running(status: DialStatus) -> bool:
    return status in _ORDER


def _forward(state: DialState, status: DialStatus) -> DialStatus:
    return status if _ORDER[status] > _ORDER[state.status] else state.status


def apply(state: DialState, leg: DialLeg, status: LegStatus) -> Change | None:
    """The dial after one report of `leg`, or None when the report changes nothing."""
    if not is_running(state.status):
        return None
    if leg == DialLeg.AGENT:
        return _agent(state, status)
    return _customer(state, status)


def _agent(state: DialState, status: LegStatus) -> Change | None:
    if status == LegStatus.RINGING:
        moved = _forward(state, DialStatus.RINGING_AGENT)
        return None if moved == state.status else _keep(state, moved)
    if status == LegStatus.ANSWERED:
        # A PBX of the webhook dialer confirms the agent itself; Twilio's agent answering
        # is only the whisper starting: they confirm by pressing 1 (`confirmed`).
        if state.dialer == Dialer.WEBHOOK and not state.agent_confirmed:
            return confirmed(state)
        moved = _forward(state, DialStatus.RINGING_AGENT)
        return None if moved == state.status else _keep(state, moved)
    if status in _AGENT_ENDS:
        if not state.agent_confirmed:
            return _end(state, LineResult.AGENT_NOT_CONNECTED)
        if state.customer_answered or state.machine:
            # The agent hung up on a call that was answered: the call is over.
            return _end(state, LineResult.MACHINE if state.machine else LineResult.ANSWERED)
        # Confirmed, the customer not (yet) answered: their leg's own end tells the result.
        return None
    return None


def confirmed(state: DialState) -> Change | None:
    """The agent pressed 1 (or their PBX connected them): now the customer is rung."""
    if not is_running(state.status) or state.agent_confirmed:
        return None
    return Change(
        status=_forward(state, DialStatus.RINGING_CUSTOMER),
        agent_confirmed=True,
        customer_answered=state.customer_answered,
        machine=state.machine,
    )


def _customer(state: DialState, status: LegStatus) -> Change | None:
    if status == LegStatus.RINGING:
        moved = _forward(state, DialStatus.RINGING_CUSTOMER)
        return None if moved == state.status else _keep(state, moved)
    if status == LegStatus.ANSWERED:
        if state.customer_answered:
            return None
        return Change(
            status=_forward(state, DialStatus.CONNECTED),
            agent_confirmed=state.agent_confirmed,
            customer_answered=True,
            machine=state.machine,
        )
    if status == LegStatus.MACHINE:
        if state.machine:
            return None
        return Change(
            status=_forward(state, DialStatus.CONNECTED),
            agent_confirmed=state.agent_confirmed,
            customer_answered=True,
            machine=True,
        )
    if status == LegStatus.COMPLETED:
        # Twilio's `DialCallStatus=completed`: the customer's leg was answered and has ended.
        return _end(state, LineResult.MACHINE if state.machine else LineResult.ANSWERED)
    if status in _CUSTOMER_ENDS:
        return _end(state, _CUSTOMER_ENDS[status])
    return None


def _keep(state: DialState, status: DialStatus) -> Change:
    return Change(
        status=status,
        agent_confirmed=state.agent_confirmed,
        customer_answered=state.customer_answered,
        machine=state.machine,
    )


def _end(state: DialState, result: LineResult) -> Change:
    return Change(
        status=DialStatus.ENDED,
        agent_confirmed=state.agent_confirmed,
        customer_answered=state.customer_answered,
        machine=state.machine,
        result=result,
    )


def finalize_at(ended_at: datetime, wrap_up_seconds: int) -> datetime:
    """When an unconfirmed proposal becomes final by itself."""
    return ended_at + timedelta(seconds=wrap_up_seconds)
