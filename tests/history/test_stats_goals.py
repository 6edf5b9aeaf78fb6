"""Statistics against a queue's goals (DESIGN §13), per agent and per day, against a dataset
counted by hand below.

Events go in through history's own API as callback and the survey send them. A real HTTP
server on loopback stands in for callback's `GET /v1/queues/{key}`, which tells a queue's
zone and goals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from httpx import AsyncClient

from services.history.app import create_app
from services.history.goals import goals_in, verdict
from services.history.schemas import GoalsSet
from shared.vocabulary import GoalVerdict
from tests.conftest import serve_asgi
from tests.history.conftest import history_settings, make_event
from tests.history.test_stats_by_queue import StandInCallback, lifecycle, stand_in_callback

HELSINKI = "Europe/Helsinki"  # the site's zone too; UTC+2 in November
BILLING_GOALS = {
    "answer_within_minutes": 60,
    "sla_share": 0.5,
    "csat_average": 4.0,
    "reach_rate": 0.9,
}


@pytest.fixture
def callback_peer() -> Iterator[StandInCallback]:
    queues: dict[str, Any] = {
        "billing": {"timezone": HELSINKI, "goals": BILLING_GOALS},
        # A queue that sets no goals.
        "support": {"timezone": None, "goals": None},
    }
    with stand_in_callback(queues) as peer:
        yield peer


@pytest.fixture
async def client(
    clean_db: None, settings_kwargs: dict[str, Any], callback_peer: StandInCallback
) -> AsyncIterator[AsyncClient]:
    settings = history_settings(settings_kwargs, callback_url=callback_peer.url)
    async for http in serve_asgi(create_app(settings)):
        yield http


@pytest.fixture
async def internal(make_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key('internal')}"}


def attempt(cb: str, at: str, agent: str, outcome: str) -> dict[str, Any]:
    """A final attempt as callback records it: the agent acts."""
    return lifecycle(
        "callback_attempted", cb, at, "0401000000", agent=agent, queue="billing", outcome=outcome
    )


def survey(
    type_: str, cb: str, at: str, survey_id: str, agent: str | None, **data: Any
) -> dict[str, Any]:
    """A survey event in the agreed shape: `survey_sent` out by SMS, `survey_answered` back."""
    answered = type_ == "survey_answered"
    return make_event(
        occurred_at=at,
        channel="sms",
        direction="inbound" if answered else "outbound",
        type=type_,
        customer={"phone": "0401000000"},
        subject={"kind": "callback", "id": cb},
        actor={"kind": "customer"} if answered else {"kind": "system"},
        data={"queue": "billing", "agent_id": agent, "survey_id": survey_id, **data},
    )


def closing(type_: str, cb: str, at: str, *, queue: str = "billing", **state: Any) -> Any:
    return lifecycle(type_, cb, at, "0401000000", queue=queue, **state)


# Monday 16 and Tuesday 17 November 2026 (UTC; Helsinki is two hours ahead).
DATASET = [
    # c1: anna's second try reaches the customer 40 min after first contact, the agent they
    # last spoke with.
    attempt("c1", "2026-11-16T08:20:00Z", "anna", "no_answer"),
    attempt("c1", "2026-11-16T08:40:00Z", "anna", "reached"),
    closing(
        "callback_completed",
        "c1",
        "2026-11-16T08:40:00Z",
        agent="anna",
        outcome="reached",
        same_agent=True,
        first_contact_at="2026-11-16T08:00:00+00:00",
        sla_deadline="2026-11-16T10:00:00+00:00",
    ),
    # c2: bob reaches them in 90 min: past the goal's 60, within the SLA deadline.
    attempt("c2", "2026-11-16T10:30:00Z", "bob", "reached"),
    closing(
        "callback_completed",
        "c2",
        "2026-11-16T10:30:00Z",
        agent="bob",
        outcome="reached",
        same_agent=False,
        first_contact_at="2026-11-16T09:00:00+00:00",
        sla_deadline="2026-11-16T11:00:00+00:00",
    ),
    # c3: three tries by anna, none answered.
    attempt("c3", "2026-11-16T12:10:00Z", "anna", "no_answer"),
    attempt("c3", "2026-11-16T13:00:00Z", "anna", "busy"),
    attempt("c3", "2026-11-16T14:00:00Z", "anna", "no_answer"),
    closing(
        "callback_failed",
        "c3",
        "2026-11-16T14:00:00Z",
        agent="anna",
        outcome="attempts_exhausted",
        first_contact_at="2026-11-16T12:00:00+00:00",
        sla_deadline="2026-11-16T14:00:00+00:00",
    ),
    # c4: nobody got to it.
    closing(
        "callback_expired",
        "c4",
        "2026-11-17T09:00:01Z",
        first_contact_at="2026-11-17T07:00:00+00:00",
        sla_deadline="2026-11-17T09:00:00+00:00",
    ),
    # c5: the customer cancelled (self-service); c6: bob cancelled it.
    closing("callback_cancelled", "c5", "2026-11-17T08:30:00Z", outcome="cancelled_by_customer"),
    closing(
        "callback_cancelled",
        "c6",
        "2026-11-17T09:10:00Z",
        agent="bob",
        outcome="cancelled_by_agent",
    ),
    # c7: the customer called in and was served: reached, 20 min, no agent named.
    closing(
        "callback_completed",
        "c7",
        "2026-11-17T10:20:00Z",
        outcome="reached_inbound",
        first_contact_at="2026-11-17T10:00:00+00:00",
        sla_deadline="2026-11-17T12:00:00+00:00",
    ),
    # p1 (support, no goals): anna reaches them in 30 min.
    closing(
        "callback_completed",
        "p1",
        "2026-11-16T14:30:00Z",
        queue="support",
        agent="anna",
        outcome="reached",
        first_contact_at="2026-11-16T14:00:00+00:00",
        sla_deadline="2026-11-16T16:00:00+00:00",
    ),
    # Surveys. s1 (c1, anna): 5. s2 (c2, bob): 3, then "4": the latest answer counts.
    survey("survey_sent", "c1", "2026-11-16T09:00:00Z", "s1", "anna"),
    survey("survey_answered", "c1", "2026-11-16T09:05:00Z", "s1", "anna", score=5),
    survey("survey_sent", "c2", "2026-11-16T11:00:00Z", "s2", "bob"),
    survey("survey_answered", "c2", "2026-11-16T11:30:00Z", "s2", "bob", score=3),
    survey("survey_answered", "c2", "2026-11-16T11:31:00Z", "s2", "bob", score="4"),
    # s3 (c7): sent, never answered.
    survey("survey_sent", "c7", "2026-11-17T11:00:00Z", "s3", None),
    # s4 (anna): sent on Sunday, before the range; answered 02.30 Monday in Helsinki: 2.
    survey("survey_sent", "c0", "2026-11-15T20:00:00Z", "s4", "anna"),
    survey("survey_answered", "c0", "2026-11-16T00:30:00Z", "s4", "anna", score=2),
    # s5: an answer that is no score is not one.
    survey("survey_answered", "c9", "2026-11-17T12:00:00Z", "s5", "bob", score=9),
]

# Monday and Tuesday in Helsinki.
WHOLE = {"from": "2026-11-16T00:00:00+02:00", "to": "2026-11-18T00:00:00+02:00"}


@pytest.fixture
async def seeded(client: AsyncClient, internal: dict[str, str]) -> AsyncClient:
    response = await client.post("/v1/events:batch", json={"events": DATASET}, headers=internal)
    assert response.status_code == 200, response.text
    return client


async def _stats(client: AsyncClient, headers: dict[str, str], **params: str) -> Any:
    response = await client.get("/v1/stats", params={**WHOLE, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _ttr(count: int, median: float | None, p90: float | None) -> dict[str, Any]:
    return {"count": count, "median_seconds": median, "p90_seconds": p90}


async def test_billing_against_its_goals(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="billing")
    assert body["goals"] == BILLING_GOALS
    figures = body["performance"]
    # Completed, failed or expired: c1 c2 c3 c4 c7. Reached within 60 min: c1 (40), c7 (20).
    assert figures["answer_within"] == {
        "minutes": 60,
        "closed": 5,
        "reached_within": 2,
        "share": 0.4,
        "goal": 0.5,
        "verdict": "missed",
    }
    # The SLA share, by each deadline, is another figure: c1, c2 and c7 made theirs.
    assert body["sla"] == {"closed": 5, "reached_within": 3, "share": 0.6}
    assert figures["reach_rate"] == {
        "closed": 5,
        "reached": 3,
        "rate": 0.6,
        "goal": 0.9,
        "verdict": "missed",
    }
    # Answers in the range: s1 5, s2 4 (its latest), s4 2. Sent in the range: s1, s2, s3;
    # answered since: s1, s2.
    assert figures["csat"] == {
        "average": pytest.approx(11 / 3),
        "responses": 3,
        "surveys_sent": 3,
        "surveys_answered": 2,
        "response_rate": pytest.approx(2 / 3),
        "goal": 4.0,
        "verdict": "missed",
    }
    # 1200, 2400, 5400 s: p90 at rank 1.8, 2400 + 0.8 * 3000.
    assert figures["time_to_reach"] == _ttr(3, 2400.0, 4800.0)
    assert body["time_to_reach"] == figures["time_to_reach"]
    # Attempts: c1 2, c2 1, c3 3.
    assert figures["attempts_per_reach"] == {"attempts": 6, "reaches": 3, "value": 2.0}
    assert figures["same_agent"] == {"reaches": 3, "same_agent": 1, "share": pytest.approx(1 / 3)}
    # Of all seven closed: c4 expired, c5 cancelled by the customer (not c6, by bob).
    assert figures["abandonment"] == {
        "closed": 7,
        "expired": 1,
        "cancelled_by_customer": 1,
        "share": pytest.approx(2 / 7),
    }


async def test_billing_per_agent(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="billing")
    agents = {row.pop("agent_id"): row for row in body["performance_by_agent"]}
    assert sorted(agents) == ["anna", "bob"]
    anna, bob = agents["anna"], agents["bob"]
    # anna closed c1 (reached in 40 min) and c3 (failed) after five tries; rated 5 and 2.
    assert anna["answer_within"]["share"] == 0.5
    assert anna["answer_within"]["verdict"] == "met"
    assert (anna["reach_rate"]["rate"], anna["reach_rate"]["verdict"]) == (0.5, "missed")
    assert anna["attempts_per_reach"] == {"attempts": 5, "reaches": 1, "value": 5.0}
    assert anna["csat"] == {
        "average": 3.5,
        "responses": 2,
        "surveys_sent": 1,
        "surveys_answered": 1,
        "response_rate": 1.0,
        "goal": 4.0,
        "verdict": "missed",
    }
    assert anna["same_agent"]["share"] == 1.0
    assert anna["time_to_reach"] == _ttr(1, 2400.0, 2400.0)
    assert anna["abandonment"]["share"] == 0.0
    # bob reached c2 in 90 min with one try, cancelled c6; rated 4.
    assert (bob["answer_within"]["share"], bob["answer_within"]["verdict"]) == (0.0, "missed")
    assert (bob["reach_rate"]["rate"], bob["reach_rate"]["verdict"]) == (1.0, "met")
    assert bob["attempts_per_reach"]["value"] == 1.0
    assert (bob["csat"]["average"], bob["csat"]["verdict"]) == (4.0, "met")
    assert bob["same_agent"]["share"] == 0.0
    assert bob["abandonment"] == {"closed": 2, "expired": 0, "cancelled_by_customer": 0, "share": 0}


async def test_billing_per_day(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="billing")
    monday, tuesday = body["performance_by_day"]
    assert (monday["local_date"], monday["start"], monday["end"]) == (
        "2026-11-16",
        "2026-11-15T22:00:00Z",
        "2026-11-16T22:00:00Z",
    )
    # Monday: c1, c2, c3 closed; six tries; s1, s2 and s4 answered, s1 and s2 sent.
    assert monday["answer_within"]["reached_within"] == 1
    assert monday["answer_within"]["closed"] == 3
    assert monday["reach_rate"]["rate"] == pytest.approx(2 / 3)
    assert monday["time_to_reach"] == _ttr(2, 3900.0, 5100.0)
    assert monday["attempts_per_reach"]["value"] == 3.0
    assert (monday["csat"]["responses"], monday["csat"]["response_rate"]) == (3, 1.0)
    assert monday["abandonment"]["share"] == 0.0
    # Tuesday: c4 expired, c5 and c6 cancelled, c7 reached on the line in 20 min; s3 sent.
    assert tuesday["local_date"] == "2026-11-17"
    assert tuesday["answer_within"] == {
        "minutes": 60,
        "closed": 2,
        "reached_within": 1,
        "share": 0.5,
        "goal": 0.5,
        "verdict": "met",
    }
    assert tuesday["attempts_per_reach"] == {"attempts": 0, "reaches": 1, "value": 0.0}
    assert tuesday["csat"] == {
        "average": None,
        "responses": 0,
        "surveys_sent": 1,
        "surveys_answered": 0,
        "response_rate": 0.0,
        "goal": 4.0,
        "verdict": None,
    }
    assert tuesday["abandonment"]["share"] == 0.5
    # The days add up to the range.
    for figure, field in (("reach_rate", "reached"), ("csat", "responses")):
        assert monday[figure][field] + tuesday[figure][field] == body["performance"][figure][field]


async def test_the_sla_share_per_hour(seeded: AsyncClient, reader: dict[str, str]) -> None:
    monday = {"from": "2026-11-16T00:00:00+02:00", "to": "2026-11-17T00:00:00+02:00"}
    body = await _stats(seeded, reader, queue="billing", bucket="hour", **monday)
    assert len(body["sla_by_bucket"]) == len(body["buckets"]) == 24
    closed = {
        body["buckets"][i]["local_start"][11:13]: (sla["reached_within"], sla["closed"])
        for i, sla in enumerate(body["sla_by_bucket"])
        if sla["closed"]
    }
    # c1 closed at 10.40 and c2 at 12.30 within their deadlines; c3 failed at 16.00.
    assert closed == {"10": (1, 1), "12": (1, 1), "16": (0, 1)}


async def test_across_queues_there_is_no_goal(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader)
    assert body["goals"] == dict.fromkeys(BILLING_GOALS)
    # The survey answers came in by SMS, but they answer our question: no contact, no demand.
    assert body["contacts"] == {}
    assert sum(map(sum, body["demand"])) == 0
    figures = body["performance"]
    # Without minutes, the answer-within share is the SLA share: c1 c2 c7 p1 of six.
    assert figures["answer_within"] == {
        "minutes": None,
        "closed": 6,
        "reached_within": 4,
        "share": pytest.approx(4 / 6),
        "goal": None,
        "verdict": None,
    }
    assert body["sla"]["share"] == figures["answer_within"]["share"]
    assert (figures["reach_rate"]["reached"], figures["reach_rate"]["verdict"]) == (4, None)
    assert figures["csat"]["verdict"] is None
    verdicts = [
        row[figure]["verdict"]
        for row in body["performance_by_agent"] + body["performance_by_day"]
        for figure in ("answer_within", "reach_rate", "csat")
    ]
    assert set(verdicts) == {None}
    # anna also closed p1 in support.
    anna = next(row for row in body["performance_by_agent"] if row["agent_id"] == "anna")
    assert anna["reach_rate"] == {
        "closed": 3,
        "reached": 2,
        "rate": pytest.approx(2 / 3),
        "goal": None,
        "verdict": None,
    }


async def test_a_queue_without_goals(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="support")
    assert body["goals"] == dict.fromkeys(BILLING_GOALS)
    assert body["performance"]["reach_rate"] == {
        "closed": 1,
        "reached": 1,
        "rate": 1.0,
        "goal": None,
        "verdict": None,
    }
    assert body["performance"]["csat"]["responses"] == 0


async def test_one_agent_in_one_queue(seeded: AsyncClient, reader: dict[str, str]) -> None:
    body = await _stats(seeded, reader, queue="billing", agent_id="bob")
    assert [row["agent_id"] for row in body["performance_by_agent"]] == ["bob"]
    figures = body["performance"]
    assert figures["reach_rate"]["verdict"] == "met"
    assert figures["csat"]["average"] == 4.0
    assert figures["abandonment"]["closed"] == 2


async def test_no_goals_when_callback_cannot_say(
    seeded: AsyncClient, reader: dict[str, str], callback_peer: StandInCallback
) -> None:
    callback_peer.failing = True
    body = await _stats(seeded, reader, queue="billing")
    assert body["goals"] == dict.fromkeys(BILLING_GOALS)
    # Measured all the same, by the SLA deadlines.
    assert body["performance"]["answer_within"]["share"] == 0.6
    assert body["performance"]["reach_rate"]["verdict"] is None


async def test_an_empty_range_has_figures_and_no_verdicts(
    client: AsyncClient, reader: dict[str, str]
) -> None:
    body = await _stats(client, reader, queue="billing")
    figures = body["performance"]
    assert figures["answer_within"]["share"] is None
    assert figures["answer_within"]["verdict"] is None
    assert figures["attempts_per_reach"]["value"] is None
    assert figures["csat"]["response_rate"] is None
    assert body["performance_by_agent"] == []
    assert len(body["performance_by_day"]) == 2


def test_goals_that_are_not_numbers_are_unset() -> None:
    assert (
        goals_in(
            {
                "answer_within_minutes": "60",
                "sla_share": None,
                "csat_average": [4],
                "reach_rate": True,
            }
        )
        == GoalsSet()
    )
    assert goals_in(None) == GoalsSet()
    assert goals_in({"sla_share": 1, "csat_average": 4.2}) == GoalsSet(
        sla_share=1.0, csat_average=4.2
    )


def test_a_share_met_exactly_is_met() -> None:
    assert verdict(4 / 5, 0.8) == GoalVerdict.MET
    assert verdict(0.79, 0.8) == GoalVerdict.MISSED
    assert verdict(None, 0.8) is None
    assert verdict(0.5, None) is None
