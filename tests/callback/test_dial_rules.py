"""What the line's reports make of a dial (§10): every status, twice, and in any order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.callback.dial_rules import LINE_OUTCOMES, Change, DialState, apply, confirmed
from shared.vocabulary import AttemptOutcome, Dialer, DialLeg, DialStatus, LegStatus, LineResult

Report = tuple[DialLeg, LegStatus]


def run(
    reports: list[Report | str], dialer: Dialer = Dialer.TWILIO
) -> tuple[DialState, LineResult | None]:
    """The dial after `reports` in this order (`"1"`: the agent pressed 1), and its result."""
    state = DialState(
        dialer=dialer,
        status=DialStatus.REQUESTING,
        agent_confirmed=False,
        customer_answered=False,
        machine=False,
    )
    result: LineResult | None = None
    for report in reports:
        change = confirmed(state) if isinstance(report, str) else apply(state, *report)
        if change is None:
            continue
        assert result is None, "an ended dial took another report"
        state = _next(state, change)
        result = change.result
    return state, result


def _next(state: DialState, change: Change) -> DialState:
    return DialState(
        dialer=state.dialer,
        status=change.status,
        agent_confirmed=change.agent_confirmed,
        customer_answered=change.customer_answered,
        machine=change.machine,
    )


AGENT = DialLeg.AGENT
CUSTOMER = DialLeg.CUSTOMER


@pytest.mark.parametrize(
    ("end", "result", "proposed"),
    [
        (LegStatus.COMPLETED, LineResult.ANSWERED, AttemptOutcome.REACHED),
        (LegStatus.NO_ANSWER, LineResult.NO_ANSWER, AttemptOutcome.NO_ANSWER),
        (LegStatus.BUSY, LineResult.BUSY, AttemptOutcome.BUSY),
        (LegStatus.FAILED, LineResult.FAILED, None),
        (LegStatus.CANCELED, LineResult.CANCELED, None),
    ],
)
def test_each_end_of_the_customers_leg_proposes_its_outcome(
    end: LegStatus, result: LineResult, proposed: AttemptOutcome | None
) -> None:
    state, got = run(
        [(AGENT, LegStatus.RINGING), "1", (CUSTOMER, LegStatus.RINGING), (CUSTOMER, end)]
    )
    assert (state.status, got) == (DialStatus.ENDED, result)
    assert LINE_OUTCOMES[result] == proposed


def test_a_machine_proposes_voicemail_when_the_call_ends() -> None:
    state, got = run(["1", (CUSTOMER, LegStatus.MACHINE)])
    assert (state.status, got) == (DialStatus.CONNECTED, None)
    _, got = run(["1", (CUSTOMER, LegStatus.MACHINE), (CUSTOMER, LegStatus.COMPLETED)])
    assert got == LineResult.MACHINE
    assert LINE_OUTCOMES[LineResult.MACHINE] == AttemptOutcome.VOICEMAIL


@pytest.mark.parametrize(
    "end", [LegStatus.NO_ANSWER, LegStatus.BUSY, LegStatus.FAILED, LegStatus.COMPLETED]
)
def test_the_agent_not_pressing_one_ends_the_dial_without_an_attempt(end: LegStatus) -> None:
    _, got = run([(AGENT, LegStatus.RINGING), (AGENT, LegStatus.ANSWERED), (AGENT, end)])
    assert got == LineResult.AGENT_NOT_CONNECTED
    assert LINE_OUTCOMES[got] is None


def test_twilio_answering_is_the_whisper_but_a_pbx_answering_is_the_agent() -> None:
    twilio, _ = run([(AGENT, LegStatus.ANSWERED)], Dialer.TWILIO)
    assert (twilio.status, twilio.agent_confirmed) == (DialStatus.RINGING_AGENT, False)
    pbx, _ = run([(AGENT, LegStatus.ANSWERED)], Dialer.WEBHOOK)
    assert (pbx.status, pbx.agent_confirmed) == (DialStatus.RINGING_CUSTOMER, True)


def test_the_agent_hanging_up_ends_an_answered_call() -> None:
    _, got = run(["1", (CUSTOMER, LegStatus.ANSWERED), (AGENT, LegStatus.COMPLETED)])
    assert got == LineResult.ANSWERED


# A whole answered call as Twilio may report it; delivered twice each and in any order, it
# still ends once, as answered (the `<Dial action>` carries `completed`).
ANSWERED_CALL: list[Report | str] = [
    (AGENT, LegStatus.RINGING),
    (AGENT, LegStatus.ANSWERED),
    "1",
    (CUSTOMER, LegStatus.RINGING),
    (CUSTOMER, LegStatus.ANSWERED),
    (CUSTOMER, LegStatus.COMPLETED),
    (AGENT, LegStatus.COMPLETED),
]


@given(st.permutations(ANSWERED_CALL + ANSWERED_CALL))
def test_reports_twice_and_out_of_order_end_an_answered_call_once(
    reports: list[Report | str],
) -> None:
    # The agent's confirmation always comes before any customer report (Twilio rings the
    # customer only after it), so keep the order Twilio guarantees and shuffle the rest.
    first_press = reports.index("1")
    customer_first = next(
        (i for i, r in enumerate(reports) if isinstance(r, tuple) and r[0] == CUSTOMER), None
    )
    if customer_first is not None and customer_first < first_press:
        reports.insert(customer_first, reports.pop(first_press))
    agent_end = reports.index((AGENT, LegStatus.COMPLETED))
    confirmed_at = reports.index("1")
    state, got = run(reports)
    if agent_end < confirmed_at:
        # The agent's leg ended before they pressed 1: that is the call, whatever comes later.
        assert got == LineResult.AGENT_NOT_CONNECTED
    else:
        assert got == LineResult.ANSWERED
    assert state.status == DialStatus.ENDED


def test_nothing_moves_a_dial_backwards() -> None:
    for late in itertools.product((AGENT, CUSTOMER), (LegStatus.RINGING,)):
        state, _ = run(["1", (CUSTOMER, LegStatus.ANSWERED), late])
        assert state.status == DialStatus.CONNECTED
