"""The cyclic garbage collector, set for a long-running process once it has started.

CPython's collector walks every tracked object of a generation when it collects it. A service
holds about 140,000 from its start (modules, classes, pydantic schemas, SQLAlchemy's mappers
and compiled statements), all of them alive until it exits, and every full collection walked
them all again: under intake's benchmark that was 15 full collections in 40 s, up to 120 ms
each (wall time on a busy machine), every request in flight stopped behind them
(bench/RESULTS.md, issue #21).

`settle()` runs once, when the process has imported and built what it serves and before it
takes work: one collection, then `gc.freeze()` moves everything alive into the permanent
generation, which later collections skip (the use `gc.freeze`'s documentation describes).
Cyclic garbage made after the start is still collected; only what was alive at the start
stays uncollected, and that lives for the process anyway. The young generation keeps
CPython's threshold: collecting it every 10,000 net allocations instead of 700 was measured
too, and its CPU saving was within the machine's noise while history's peak RSS rose about
3 MiB, next to its 120 MB ceiling (bench/RESULTS.md).

Only the process entry points call it (`ringback serve`, `worker`, `intake-relay`): a test
process builds and drops many apps, and freezing there would keep each one's cycles.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then freeze what is alive: later collections skip it."""
    gc.collect()
    gc.freeze()
