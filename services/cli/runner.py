"""`ringback run` (what `make run` calls): everything on one machine, stopped by Ctrl-C.

Uses `RINGBACK_DATABASE_URL` / `RINGBACK_REDIS_URL` when set, else starts the embedded
servers under `.data/`. Children run in their own sessions so that Ctrl-C reaches only this
supervisor, which then stops them in order: SIGTERM, a grace period, SIGKILL for stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass

import httpx

from services.cli.devstate import (
    RUN_RECORD,
    SERVICES,
    data_dir,
    dev_secrets,
    embedded_postgres,
    embedded_redis,
    forget_run,
    listen_urls,
    record_run,
)
from services.cli.embedded import EmbeddedPostgres, EmbeddedRedis

GRACE_SECONDS = 20.0


@dataclass(frozen=True)
class Child:
    name: str
    argv: list[str]


def _children() -> list[Child]:
    cli = [sys.executable, "-m", "services.cli.main"]
    return [
        Child("intake", [*cli, "serve", "intake"]),
        Child("callback", [*cli, "serve", "callback"]),
        Child("history", [*cli, "serve", "history"]),
        Child("worker", [*cli, "worker"]),
        Child("intake-relay", [*cli, "intake-relay"]),
    ]


def _say(message: str) -> None:
    print(f"[ringback] {message}", flush=True)


def run_all() -> int:
    """Start infrastructure, migrate, supervise the processes; return the exit status."""
    env = dict(os.environ)
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    try:
        if not env.get("RINGBACK_DATABASE_URL"):
            _say(f"starting embedded PostgreSQL in {data / 'pg'}")
            postgres = embedded_postgres()
            env["RINGBACK_DATABASE_URL"] = postgres.start()
        if not env.get("RINGBACK_REDIS_URL"):
            _say(f"starting embedded Redis in {data / 'redis'}")
            redis = embedded_redis()
            env["RINGBACK_REDIS_URL"] = redis.start()
        for name, value in dev_secrets().items():
            env.setdefault(name, value)
        env.setdefault("RINGBACK_SINK_DIR", str(data / "outbox"))
        env.setdefault("RINGBACK_ENVIRONMENT", "development")
        if sys.stdout.isatty():
            # The children write to our pipes, not a terminal; a person reads them through us.
            env.setdefault("RINGBACK_LOG_JSON", "false")
            env.setdefault("FORCE_COLOR", "1")
        _say("applying migrations")
        migrate = [sys.executable, "-m", "services.cli.main", "migrate"]
        if asyncio.run(_run_once(migrate, env)) != 0:
            _say("migrations failed; not starting")
            return 1
        record_run(listen_urls(env))
        return asyncio.run(_supervise(env))
    finally:
        forget_run()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        _say("stopped")


async def _run_once(argv: list[str], env: dict[str, str]) -> int:
    process = await asyncio.create_subprocess_exec(*argv, env=env)
    return await process.wait()


async def _pump(name: str, stream: asyncio.StreamReader) -> None:
    prefix = f"{name:>8} | ".encode()
    while line := await stream.readline():
        sys.stdout.buffer.write(prefix + line)
        sys.stdout.flush()


async def _supervise(env: dict[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    processes: dict[str, asyncio.subprocess.Process] = {}
    pumps: list[asyncio.Task[None]] = []
    for child in _children():
        process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        processes[child.name] = process
        pumps.append(asyncio.create_task(_pump(child.name, process.stdout)))

    exits = {asyncio.create_task(process.wait()): name for name, process in processes.items()}
    banner = asyncio.create_task(_announce(env, stop))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*exits, stopper], return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done:
        if task in exits:
            _say(f"{exits[task]} exited with status {task.result()}; stopping everything")
            status = 1
    banner.cancel()
    _say("stopping (Ctrl-C again is not needed)")
    await _stop_all(processes)
    for pump in pumps:
        pump.cancel()
    return status


async def _stop_all(processes: dict[str, asyncio.subprocess.Process]) -> None:
    for process in processes.values():
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for name, process in processes.items():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(process.wait(), timeout=remaining)
        except TimeoutError:
            _say(f"{name} did not stop within {GRACE_SECONDS:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def _announce(env: dict[str, str], stop: asyncio.Event) -> None:
    urls = listen_urls(env)
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 60
        pending = dict(urls)
        while pending and time.monotonic() < deadline and not stop.is_set():
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        del pending[name]
            await asyncio.sleep(0.3)
    if pending:
        _say(f"not ready after 60 s: {', '.join(pending)}")
        return
    for line in ready_banner(env, urls):
        _say(line)


def ready_banner(env: dict[str, str], urls: dict[str, str]) -> list[str]:
    """What a person needs once everything answers: the addresses and how to move them."""
    sink = env.get("RINGBACK_SINK_DIR", "")
    ports = ", ".join(f"RINGBACK_{name.upper()}_PORT" for name in SERVICES)
    return [
        "ready:",
        *(f"  {name:9} {url}  (docs: /docs)" for name, url in urls.items()),
        f"  {'console':9} {urls['history']}/console/  (the agent console)",
        f"  ports: {ports} move them; `make demo` reads {data_dir() / RUN_RECORD}",
        f"  SMS and email go to files under {sink}"
        if env.get("RINGBACK_SMS_PROVIDER", "file") == "file"
        else "  SMS and email go to the configured providers",
        "  try it: `make demo` in another terminal; stop with Ctrl-C",
    ]
