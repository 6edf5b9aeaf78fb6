"""Exponential backoff with jitter, for every retry we schedule."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, *, base: float = 1.0, cap: float = 300.0) -> float:
    """Delay before retry number `attempt` (1-based): "equal jitter" around base * 2^(n-1).

    Half the delay is fixed and half random, so many failing items spread out without any
    of them retrying almost immediately.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))
