"""Callback's arq worker: notifications, the sweeper, and the relay of callback's outbox.

`run_worker(settings)` is what `ringback worker` runs. Tests build the same worker from
`worker_settings(settings)` with `burst=True`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from typing import Any

import structlog
from arq import Worker, cron, func
from prometheus_client import start_http_server

from services.callback import ceilings
from services.callback.dial_tasks import finalize_attempt, place_dial, sweep_dials
from services.callback.dialers.factory import build_dialer
from services.callback.jobs import (
    BOOK_AND_CONFIRM,
    EXPIRE_CALLBACKS,
    FINALIZE_ATTEMPT,
    PLACE_DIAL,
    RELEASE_LEASES,
    SEND_NOTIFICATION,
    SWEEP_DIALS,
    SWEEP_NOTIFICATIONS,
)
from services.callback.models import CallbackOutbox
from services.callback.promises import CHECK_PROMISES, check_promises
from services.callback.senders.factory import build_email_sender, build_sms_sender
from services.callback.settings import CallbackSettings
from services.callback.tasks import (
    WorkerMetrics,
    WorkerState,
    book_and_confirm,
    expire_callbacks,
    release_leases,
    send_notification,
    state_of,
    sweep_notifications,
)
from services.callback.voicemails import SWEEP_RECORDING_DELETES, sweep_recording_deletes
from shared import eventloop
from shared.contracts import EVENTS_BATCH
from shared.db import asyncpg_dsn, create_engine, create_session_factory
from shared.http import create_http_client, internal_client
from shared.job_start import LeanWorker
from shared.jobs import job_deserializer, job_serializer, traced_job
from shared.outbox import OutboxRelay
from shared.redis_url import arq_worker_connection

log = structlog.get_logger("ringback.callback.worker")

# arq counts every run of a job, lease waits and SIGTERM hand-backs included; our own
# `attempts` column is the real budget, so arq's limit only stops a runaway job.
_ARQ_EXTRA_TRIES = 5
# Cron jobs that return how much they did (0: nothing).
_SWEEPS = frozenset(
    {
        SWEEP_NOTIFICATIONS,
        EXPIRE_CALLBACKS,
        RELEASE_LEASES,
        CHECK_PROMISES,
        SWEEP_DIALS,
        SWEEP_RECORDING_DELETES,
    }
)


class QuietIdleSweeps(logging.Filter):
    """arq logs each run of a cron job at INFO: a sweep that found nothing becomes DEBUG.

    Three sweeps and a health check every half minute otherwise fill a newcomer's terminal
    with lines that say nothing happened. A run's start line is DEBUG (its end says what it
    did); its end line stays INFO when the sweep did something.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._idle(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # The logger passed the record at INFO; the handlers would print it whatever its level.
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    @staticmethod
    def _idle(record: logging.LogRecord) -> bool:
        message, args = str(record.msg), record.args
        if message.startswith("recording health"):
            return True
        if not isinstance(args, tuple) or len(args) < 3 or args[1] not in _SWEEPS:
            return False
        return "→" in message or ("←" in message and args[2] in ("0", ""))


def quiet_idle_sweeps() -> None:
    """Install `QuietIdleSweeps` on arq's worker logger (once)."""
    logger = logging.getLogger("arq.worker")
    if not any(isinstance(f, QuietIdleSweeps) for f in logger.filters):
        logger.addFilter(QuietIdleSweeps())


def worker_settings(settings: CallbackSettings) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` (an arq `WorkerSettings` as a dict)."""
    return {
        "functions": [
            func(
                traced_job(SEND_NOTIFICATION, send_notification),
                name=SEND_NOTIFICATION,
                max_tries=settings.notification_max_tries + _ARQ_EXTRA_TRIES,
                timeout=settings.notification_timeout_seconds,
                # No stored result: the job id is free again the moment the job ends, so
                # the sweeper can always re-enqueue a row that still needs work.
                keep_result=0,
            ),
            func(
                traced_job(PLACE_DIAL, place_dial),
                name=PLACE_DIAL,
                # A rerun after a crash only marks the dial `unknown`: never a second call.
                max_tries=3,
                timeout=settings.job_timeout_seconds,
                keep_result=0,
            ),
            func(
                traced_job(FINALIZE_ATTEMPT, finalize_attempt),
                name=FINALIZE_ATTEMPT,
                max_tries=5,
                timeout=settings.job_timeout_seconds,
                keep_result=0,
            ),
            func(
                traced_job(BOOK_AND_CONFIRM, book_and_confirm),
                name=BOOK_AND_CONFIRM,
                # Transient database errors are retried by arq; the sweeper is the backstop.
                max_tries=5,
                timeout=settings.job_timeout_seconds,
                keep_result=0,
            ),
        ],
        "cron_jobs": [
            cron(
                traced_job(SWEEP_NOTIFICATIONS, sweep_notifications),
                name=SWEEP_NOTIFICATIONS,
                second={0, 30},
                run_at_startup=True,
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
            cron(
                traced_job(EXPIRE_CALLBACKS, expire_callbacks),
                name=EXPIRE_CALLBACKS,
                second=15,
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
            cron(
                traced_job(SWEEP_DIALS, sweep_dials),
                name=SWEEP_DIALS,
                second={5, 35},
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
            cron(
                traced_job(RELEASE_LEASES, release_leases),
                name=RELEASE_LEASES,
                second=45,
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
            # Promises at risk (§14): every minute, every queue.
            cron(
                traced_job(CHECK_PROMISES, check_promises),
                name=CHECK_PROMISES,
                second=50,
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
            # Recordings erasure could not delete at the provider (§11), with backoff per row;
            # at startup too, so a worker that was down catches up at once.
            cron(
                traced_job(SWEEP_RECORDING_DELETES, sweep_recording_deletes),
                name=SWEEP_RECORDING_DELETES,
                second=25,
                run_at_startup=True,
                timeout=settings.job_timeout_seconds,
                max_tries=1,
                keep_result=0,
            ),
        ],
        "queue_name": settings.queue_name,
        **arq_worker_connection(
            settings.require_redis_url(),
            job_serializer=job_serializer,
            job_deserializer=job_deserializer,
            default_queue_name=settings.queue_name,
        ),
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        "on_startup": _on_startup(settings),
        "on_shutdown": _on_shutdown,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": settings.worker_poll_delay_seconds,
        "job_timeout": settings.notification_timeout_seconds,
        "keep_result": 0,
        "job_completion_wait": settings.worker_shutdown_grace_seconds,
        "health_check_interval": 30,
    }


def create_worker(settings: CallbackSettings, **overrides: Any) -> Worker:
    """An arq `Worker` for `settings` (one that starts a poll's jobs in one round trip,
    `shared.job_start`); call inside a running event loop."""
    quiet_idle_sweeps()
    return LeanWorker(**{**worker_settings(settings), **overrides})


def run_worker(settings: CallbackSettings) -> None:
    """Run the worker until SIGTERM or SIGINT (running jobs get the grace period)."""
    eventloop.run(serve_worker(settings))


async def serve_worker(settings: CallbackSettings, **overrides: Any) -> None:
    """Run the worker in the current event loop until it is stopped by a signal."""
    worker = create_worker(settings, **overrides)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # arq stops by cancelling its main task after SIGTERM/SIGINT (and the grace period).
        log.info("callback.worker.stopping")
    finally:
        # Jobs cancelled at the end of the grace period are handed back to the queue by arq;
        # collect them here so closing does not trip over their cancellation.
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        worker.tasks.clear()
        await close_worker(worker)
        log.info("callback.worker.stopped")


async def close_worker(worker: Worker) -> None:
    """`worker.close()`, without the warning arq 0.28 triggers in redis-py 5 (`close()`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Call to deprecated close\.", category=DeprecationWarning
        )
        await worker.close()


def _on_startup(settings: CallbackSettings) -> Any:
    async def on_startup(ctx: dict[str, Any]) -> None:
        engine = create_engine(
            settings, application_name="ringback.callback.worker", service="callback"
        )
        sessions = create_session_factory(engine)
        http = create_http_client(settings, user_agent="ringback-callback", per_call=True)
        state = WorkerState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            http=http,
            sms=build_sms_sender(settings, client=http),
            dialer=build_dialer(settings, client=http),
            email=build_email_sender(settings),
            metrics=WorkerMetrics(),
        )
        ceilings.register(state.metrics.registry, settings)
        if settings.worker_metrics_port is not None:
            start_http_server(settings.worker_metrics_port, registry=state.metrics.registry)
        if settings.outbox_relay:
            state.history = internal_client(
                settings, service="callback", peer="history", per_call=True
            )
            relay = OutboxRelay(
                model=CallbackOutbox,
                session_factory=sessions,
                clients={"history": state.history},
                listen_dsn=asyncpg_dsn(settings.direct_database_url_for("callback")),
                source="callback",
                registry=state.metrics.registry,
                batch_routes={"history": EVENTS_BATCH},
            )
            state.relay_task = asyncio.create_task(relay.run(state.relay_stop))
        if ctx.get("redis") is not None:
            state.depth_task = asyncio.create_task(_watch_queue_depth(ctx["redis"], state))
        ctx["state"] = state
        log.info(
            "callback.worker.started",
            queue=settings.queue_name,
            sms_provider=settings.sms_provider,
            email_provider=settings.email_provider,
            relay=settings.outbox_relay,
        )

    return on_startup


async def _watch_queue_depth(redis: Any, state: WorkerState) -> None:
    """Keep `ringback_queue_depth` current for the autoscaler, every few seconds."""
    while not state.relay_stop.is_set():
        try:
            state.metrics.queue_depth.set(await redis.zcard(state.settings.queue_name))
        except Exception:
            log.warning("callback.worker.queue_depth_unavailable")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.relay_stop.wait(), timeout=5)


async def _on_shutdown(ctx: dict[str, Any]) -> None:
    if "state" not in ctx:
        return
    state = state_of(ctx)
    state.relay_stop.set()
    if state.depth_task is not None:
        await state.depth_task
    if state.relay_task is not None:
        try:
            await asyncio.wait_for(state.relay_task, timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            log.warning("callback.worker.relay_stop_timeout")
        except Exception:
            log.exception("callback.worker.relay_failed")
    for client in (state.http, state.history):
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
    await state.engine.dispose()
