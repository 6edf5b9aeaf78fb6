"""Erlang C is right: published values, an independent exact implementation, the simulation."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from services.callback import erlang
from services.callback.simulation import (
    NEVER,
    Day,
    Staff,
    needed_for_day,
    shares_by_hour,
    simulated_days,
    start_times,
)

# ------------------------------------------------------------------ an independent reference


def _exact_c(agents: int, traffic: Fraction) -> Fraction:
    """Erlang C by the textbook summation, in exact rationals (no recurrence, no floats):

    C = (A^N/N! · N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! · N/(N-A)).
    """
    if agents <= traffic:
        return Fraction(1)
    terms = [traffic**k / math.factorial(k) for k in range(agents)]
    top = traffic**agents / math.factorial(agents) * Fraction(agents) / (agents - traffic)
    return top / (sum(terms) + top)


def _exact_needed(traffic: Fraction, handle: int, target: int, share: float) -> int:
    agents = max(math.ceil(traffic / Fraction(85, 100)), 1)
    while True:
        wait = _exact_c(agents, traffic)
        level = 1 - float(wait) * math.exp(-float(agents - traffic) * target / handle)
        if level >= share:
            return agents
        agents += 1


# Traffic intensities from a quiet desk to a large centre, and targets from a phone queue's
# 20 s to a callback window as long as two handle times.
GRID_TRAFFIC = [Fraction(1, 4), Fraction(1), Fraction(5, 2), Fraction(10), Fraction(47, 2), 60, 150]
GRID_TARGETS = [(180, 20, 0.8), (360, 60, 0.9), (300, 600, 0.95), (240, 15, 0.5)]


@pytest.mark.parametrize("traffic", GRID_TRAFFIC)
def test_erlang_c_agrees_with_the_exact_summation_over_a_grid(traffic: Fraction | int) -> None:
    exact = Fraction(traffic)
    floor = math.floor(exact) + 1
    for agents in range(floor, floor + 12):
        assert erlang.erlang_c(agents, float(exact)) == pytest.approx(
            float(_exact_c(agents, exact)), rel=1e-9, abs=1e-15
        )


@pytest.mark.parametrize("traffic", GRID_TRAFFIC)
@pytest.mark.parametrize(("handle", "target", "share"), GRID_TARGETS)
def test_agents_needed_agrees_with_the_exact_summation(
    traffic: Fraction | int, handle: int, target: int, share: float
) -> None:
    exact = Fraction(traffic)
    assert erlang.agents_needed(
        float(exact), handle_seconds=handle, target_seconds=target, share=share
    ) == _exact_needed(exact, handle, target, share)


def test_published_erlang_b_table_values() -> None:
    # Erlang B tables (e.g. Kleinrock, Queueing Systems vol. 1; ITU-T E.800 traffic tables).
    assert erlang.erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang.erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-7)
    assert erlang.erlang_b(2, 1.0) == pytest.approx(0.2)


def test_the_textbook_call_centre_example() -> None:
    # The classic worked example: 100 calls in 30 minutes, 180 s handle time, so A = 10
    # Erlangs; 80 % answered within 20 s. With 11 agents a caller waits with probability
    # 0.6821 and 39 % are answered in time; 14 agents is the first to reach 80 % (88.8 %).
    traffic = 100 * 180 / 1800
    assert erlang.erlang_c(11, traffic) == pytest.approx(0.6821, abs=5e-5)
    assert erlang.service_level(
        11, traffic, handle_seconds=180, target_seconds=20
    ) == pytest.approx(0.3896, abs=5e-4)
    assert erlang.service_level(
        14, traffic, handle_seconds=180, target_seconds=20
    ) == pytest.approx(0.8884, abs=5e-4)
    assert erlang.agents_needed(traffic, handle_seconds=180, target_seconds=20, share=0.8) == 14
    assert erlang.mean_wait_seconds(14, traffic, handle_seconds=180) == pytest.approx(
        7.84, abs=0.01
    )


def test_large_traffic_neither_overflows_nor_loses_its_way() -> None:
    # 10,000 Erlangs: A**N / N! alone would overflow a float around N = 170.
    needed = erlang.agents_needed(10_000.0, handle_seconds=360, target_seconds=30, share=0.9)
    assert needed == erlang.staffing_floor(10_000.0)
    assert 0 < erlang.erlang_c(10_050, 10_000.0) < 1
    assert erlang.erlang_c(10_000, 10_000.0) == 1


def test_the_occupancy_floor_holds_even_where_the_goal_is_easy() -> None:
    # A two-hour window against a 6-minute call: Erlang C would settle for any N above A.
    assert erlang.agents_needed(8.5, handle_seconds=360, target_seconds=7200, share=0.8) == 10
    assert erlang.agents_needed(0.0, handle_seconds=360, target_seconds=7200, share=0.8) == 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        erlang.agents_needed(1.0, handle_seconds=0, target_seconds=20, share=0.8)
    with pytest.raises(ValueError, match="never negative"):
        erlang.erlang_b(-1, 1.0)


# ------------------------------------------------------------------ the simulation beside it


def test_the_simulation_agrees_with_erlang_c_in_its_regime() -> None:
    # Poisson arrivals, exponential calls, a target below 3x the handle time: Erlang C's own
    # world. A day of 100 calls an hour at 180 s (A = 5) run 10 times.
    rate, handle, target = 100.0, 180.0, 20.0
    traffic = rate * handle / 3600
    days = simulated_days([rate] * 24, handle_seconds=handle, replications=10, seed=7)
    for agents in (6, 7, 8):
        hours = shares_by_hour(days, [agents] * 24, window_seconds=target)[2:]
        simulated = sum(h.within for h in hours) / sum(h.arrived for h in hours)
        expected = erlang.service_level(
            agents, traffic, handle_seconds=handle, target_seconds=target
        )
        assert simulated == pytest.approx(expected, abs=0.03)
    needed = needed_for_day(
        days, [rate] * 24, handle_seconds=handle, window_seconds=target, share=0.8
    )
    closed_form = erlang.agents_needed(
        traffic, handle_seconds=handle, target_seconds=target, share=0.8
    )
    # Hour by hour a day has its own luck; across the day the two say the same.
    assert sorted(needed)[len(needed) // 2] == closed_form
    assert all(abs(n - closed_form) <= 1 for n in needed)


def test_a_burst_the_closed_form_cannot_see() -> None:
    # 30 customers book the 09:00 slot; each call takes 6 minutes, and 90 % should be started
    # within 30 minutes. A = 30 x 0.1 h = 3 Erlangs, so Erlang C (Poisson arrivals) says 4
    # agents are plenty. By hand: an agent starts calls at 0, 6, 12, 18, 24 and 30 minutes,
    # 6 within the half hour; 4 agents start 24 of 30 (80 %), 5 agents all 30.
    burst = Day(arrivals=[0.0] * 30, handles=[360.0] * 30)
    assert erlang.agents_needed(3.0, handle_seconds=360, target_seconds=1800, share=0.9) == 4
    assert needed_for_day([burst], [30.0], handle_seconds=360, window_seconds=1800, share=0.9) == [
        5
    ]
    four = shares_by_hour([burst], [4], window_seconds=1800)
    assert (four[0].arrived, four[0].within) == (30, 24)


def test_callbacks_are_started_in_rank_order_by_whoever_is_free_first() -> None:
    # Ranked a, b, c, d; c is not due until 10 min. Two agents, 6-minute calls.
    ready = [0.0, 0.0, 600.0, 0.0]
    starts = start_times(ready, [360.0] * 4, Staff(speeds=[1.0, 1.0]))
    assert starts == [0.0, 0.0, 600.0, 360.0]


def test_an_agent_starts_calls_only_in_the_hours_the_plan_allows() -> None:
    # One agent now, none in the next hour, one again after: the third call waits for hour 2.
    staff = Staff(speeds=[1.0], caps=[1, 0, 1], origin=-3000.0)
    starts = start_times([0.0, 0.0, 0.0], [300.0] * 3, staff)
    # Hour 0 is [-3000, 600), hour 1 [600, 4200), hour 2 from 4200.
    assert starts == [0.0, 300.0, 4200.0]


def _naive_starts(ready: list[float], handle: list[float], staff: Staff) -> list[float]:
    """The rule read literally, one callback at a time: the agent who can start soonest takes
    the first-ranked callback that is due by then. Slow (callbacks x agents), plainly right."""
    free = [0.0] * len(staff.speeds)
    starts = [NEVER] * len(ready)
    left = set(range(len(ready)))
    while left:
        earliest_due = min(ready[i] for i in left)
        options = [(staff.next_start(a, max(free[a], earliest_due)), a) for a in range(len(free))]
        moment, agent = min(options)
        if moment == NEVER:
            break
        item = min(i for i in left if ready[i] <= moment)
        starts[item] = moment
        left.remove(item)
        free[agent] = moment + handle[item] / staff.speeds[agent]
    return starts


@pytest.mark.parametrize("seed", range(25))
def test_the_fast_simulation_is_the_rule_read_literally(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(1, 60)
    ready = [rng.choice([0.0, rng.uniform(0, 4 * 3600)]) for _ in range(count)]
    handle = [rng.uniform(60, 900) for _ in range(count)]
    speeds = sorted((rng.choice([0.5, 1.0]) for _ in range(rng.randint(1, 6))), reverse=True)
    caps = [rng.randint(0, len(speeds)) for _ in range(rng.randint(1, 8))]
    staff = Staff(speeds=speeds, caps=caps, origin=-rng.uniform(0, 3600))

    assert start_times(ready, handle, staff) == pytest.approx(_naive_starts(ready, handle, staff))
