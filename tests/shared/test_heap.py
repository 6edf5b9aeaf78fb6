"""Every long-running process freezes its startup heap before it takes work (`shared.heap`),
and cyclic garbage made after that is still collected.

Each case runs in a child process: a frozen heap is the process's for good, and this test
process builds and drops many apps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.infra import ROOT

_SETTLED = textwrap.dedent(
    """
    import gc, json, weakref
    from shared import heap
    import services.intake.app  # a service's modules, as a process has them at its start

    heap.settle()
    frozen = gc.get_freeze_count()

    class Node:
        pass

    # A cycle made after the start: unreachable, it must still be collected.
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    print(json.dumps({"frozen": frozen, "cycle_collected": gone() is None}))
    """
)


def _python(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return answer


def test_settle_freezes_the_startup_heap_and_still_collects_later_cycles() -> None:
    seen = _python(_SETTLED)
    # The modules, classes and schemas of a service: tens of thousands of objects.
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 20_000
    assert seen["cycle_collected"] is True


# Each entry point's work replaced by a probe that reports what the collector held when the
# work would have started, then stops the process.
_ENTRY = textwrap.dedent(
    """
    import gc, json, sys
    import uvicorn
    import services.callback.worker, services.intake.relay
    from services.cli.main import main

    def report(*_args, **_kwargs):
        print(json.dumps({"frozen": gc.get_freeze_count()}))
        sys.exit(0)

    async def relay(*_args, **_kwargs):
        report()

    uvicorn.Server.run = report
    services.callback.worker.run_worker = report
    services.intake.relay.run_relay = relay
    main(sys.argv[1:])
    """
)


@pytest.mark.parametrize(
    "command", [["serve", "intake"], ["serve", "history"], ["worker"], ["intake-relay"]]
)
def test_each_process_starts_its_work_with_its_heap_frozen(
    base_env: dict[str, str], command: list[str]
) -> None:
    code = _ENTRY.replace("main(sys.argv[1:])", f"main({command!r})")
    seen = _python(code, base_env)
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 20_000
