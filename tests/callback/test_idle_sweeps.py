"""A sweep that finds nothing logs at DEBUG; INFO is for sweeps that did something."""

from __future__ import annotations

import logging

import pytest

from services.callback.jobs import SEND_NOTIFICATION, SWEEP_NOTIFICATIONS
from services.callback.worker import quiet_idle_sweeps
from tests.callback.conftest import RunWorker


def _arq_lines(caplog: pytest.LogCaptureFixture, job: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "arq.worker"
        and isinstance(record.args, tuple)
        and len(record.args) > 1
        and record.args[1] == job
    ]


async def test_an_idle_sweep_by_the_real_worker_prints_nothing_at_info(
    run_worker: RunWorker, clean_db: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # The sweep runs once at startup, finds no notification and no owed confirmation.
    await run_worker()
    assert not _arq_lines(caplog, SWEEP_NOTIFICATIONS)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    await run_worker()
    lines = _arq_lines(caplog, SWEEP_NOTIFICATIONS)
    assert lines
    assert {record.levelno for record in lines} == {logging.DEBUG}


def test_a_sweep_that_did_something_and_other_jobs_stay_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet_idle_sweeps()
    caplog.set_level(logging.INFO)
    arq = logging.getLogger("arq.worker")
    arq.info("%6.2fs → %s(%s)%s", 0.0, SWEEP_NOTIFICATIONS, "", "")
    arq.info("%6.2fs ← %s ● %s", 0.01, SWEEP_NOTIFICATIONS, "0")
    arq.info("%6.2fs ← %s ● %s", 0.01, SWEEP_NOTIFICATIONS, "3")
    arq.info("%6.2fs → %s(%s)%s", 0.0, f"notify:x:{SEND_NOTIFICATION}", "'x'", "")
    shown = [(record.levelno, record.getMessage()) for record in caplog.records]
    assert shown == [
        (logging.INFO, f"  0.01s ← {SWEEP_NOTIFICATIONS} ● 3"),
        (logging.INFO, f"  0.00s → notify:x:{SEND_NOTIFICATION}('x')"),
    ]
