"""Erlang B and C, and the agents a service level needs: pure arithmetic, no database.

The textbook formula for Erlang C sums `A**k / k!`, which overflows a float near k = 170 and
loses precision well before. Here Erlang B comes from its recurrence

    B(0) = 1,    B(k) = A·B(k-1) / (k + A·B(k-1))

whose every term lies in [0, 1], so it is exact to rounding for any traffic (10,000 Erlangs
take 10,000 steps and nothing grows), and Erlang C follows from B in closed form:

    C(N, A) = N·B / (N - A·(1 - B))      for N > A (else every caller waits: C = 1).

`agents_needed` walks N upward carrying B along, so finding N costs one pass, not one pass
per candidate. `tests/callback/test_erlang.py` holds it to published values and to an
independent exact (rational) implementation of the summation formula.
"""

from __future__ import annotations

import math

# No plan should run agents flat out: the staffing floor is A / MAX_OCCUPANCY (DESIGN §14).
MAX_OCCUPANCY = 0.85


def erlang_b(agents: int, traffic: float) -> float:
    """Blocking probability with `agents` servers and `traffic` Erlangs offered (M/M/N/N)."""
    if agents < 0 or traffic < 0:
        raise ValueError("agents and traffic are never negative")
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = _next_b(blocking, k, traffic)
    return blocking


def _next_b(blocking: float, k: int, traffic: float) -> float:
    return traffic * blocking / (k + traffic * blocking)


def _c_from_b(agents: int, traffic: float, blocking: float) -> float:
    if agents <= traffic:
        return 1.0
    return agents * blocking / (agents - traffic * (1.0 - blocking))


def erlang_c(agents: int, traffic: float) -> float:
    """Probability that a contact waits at all (M/M/N): 1 when `agents` <= `traffic`."""
    return _c_from_b(agents, traffic, erlang_b(agents, traffic))


def _level(agents: int, traffic: float, wait_prob: float, handle: float, target: float) -> float:
    if agents <= traffic:
        return 0.0
    return 1.0 - wait_prob * math.exp(-(agents - traffic) * target / handle)


def service_level(
    agents: int, traffic: float, *, handle_seconds: float, target_seconds: float
) -> float:
    """Share of contacts answered within `target_seconds` (M/M/N, first come first served)."""
    if traffic == 0:
        return 1.0
    return _level(agents, traffic, erlang_c(agents, traffic), handle_seconds, target_seconds)


def mean_wait_seconds(agents: int, traffic: float, *, handle_seconds: float) -> float:
    """The average speed of answer: C·h / (N - A); infinite when the queue never drains."""
    if agents <= traffic:
        return math.inf
    return erlang_c(agents, traffic) * handle_seconds / (agents - traffic)


def staffing_floor(traffic: float) -> int:
    """The fewest agents that keep occupancy at or below `MAX_OCCUPANCY`."""
    # The small tolerance keeps 8.5 / 0.85 at 10, not 11 by a rounding crumb.
    return max(0, math.ceil(traffic / MAX_OCCUPANCY - 1e-9))


def agents_needed(
    traffic: float, *, handle_seconds: float, target_seconds: float, share: float
) -> int:
    """The smallest N >= A / 0.85 with a service level of at least `share` (Erlang C)."""
    if traffic < 0 or handle_seconds <= 0 or target_seconds < 0 or not 0 <= share <= 1:
        raise ValueError("traffic, handle time, target and share out of range")
    if traffic == 0:
        return 0
    floor = max(staffing_floor(traffic), 1)
    blocking = 1.0
    agents = 0
    while True:
        agents += 1
        blocking = _next_b(blocking, agents, traffic)
        if agents < floor:
            continue
        wait_prob = _c_from_b(agents, traffic, blocking)
        if _level(agents, traffic, wait_prob, handle_seconds, target_seconds) >= share:
            return agents
