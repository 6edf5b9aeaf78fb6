"""The cyclic garbage collector, set for a long-running process once it has started.

CPython's collector walks every tracked object of a generation when it collects it. A service
holds about 140,000 from its start (modules, classes, pydantic schemas, SQLAlchemy's mappers
and compiled statements), all of them alive until it exits, and every full collection walked
them all again: under intake's load that was about 15 full collections a minute at up to
100 ms each, with every request in flight stopped behind them, and with the young
collections about a tenth of its CPU (bench/RESULTS.md, issue #21).

`settle()` runs once, when the process has imported and built what it serves and before it
takes work: one collection, then `gc.freeze()` moves everything alive into the permanent
generation, which later collections skip (the use `gc.freeze`'s documentation describes).
Young collections then run after `YOUNG` net allocations instead of CPython's 700: most of a
request's objects are freed by reference counting before any collection sees them, so fewer,
larger young collections cost less for the same work. Cyclic garbage made after the start is
still collected; only what was alive at the start stays uncollected, and that lives for the
process anyway.

Only the process entry points call it (`ringback serve`, `worker`, `intake-relay`): a test
process builds and drops many apps, and freezing there would keep each one's cycles.
"""

from __future__ import annotations

import gc

# Net allocations of tracked objects between young collections (CPython's default: 700).
YOUNG = 10_000


def settle() -> None:
    """Collect once, freeze what is alive, and make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)
