"""What every benchmark needs: scratch infrastructure, ringback processes, RSS, result files.

The infrastructure comes from `RINGBACK_BENCH_DATABASE_URL` (an admin connection; default
postgresql://postgres@127.0.0.1:5432/postgres) and `RINGBACK_BENCH_REDIS_URL` (default
redis://127.0.0.1:6379/0). Each run gets a scratch database and a Redis database index of its
own, removed afterwards. Results go to `bench/results/<name>.json`, or under the directory in
`RINGBACK_BENCH_RESULTS_DIR` (what `run.py --out DIR` sets), or to a script's `--out FILE`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
import redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WEBHOOK_PATH = "/v1/webhooks/generic"

# The interpreter the measured processes run under (ringback's, the floors' and arq's no-op
# worker): `make bench` points it at an environment of requirements-runtime.lock, what the
# container image installs, so a process loads what it loads in production. In the
# development environment it would load more: httpx imports its command-line client when
# rich and pygments are installed (pytest and schemathesis bring them), about 4 MiB of every
# process's memory. Unset (a script run by hand), the scripts' own interpreter.
SERVICE_PYTHON = os.environ.get("RINGBACK_BENCH_SERVICE_PYTHON") or sys.executable


def admin_url() -> str:
    return os.environ.get(
        "RINGBACK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def redis_base() -> str:
    return os.environ.get("RINGBACK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def results_path(name: str, out: str | None = None) -> Path:
    """Where a script writes its figures: `--out`, else the results directory."""
    if out:
        return Path(out)
    directory = os.environ.get("RINGBACK_BENCH_RESULTS_DIR")
    return (Path(directory) if directory else BENCH / "results") / f"{name}.json"


def write_results(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_internal_key() -> str:
    return "rb_benchmark00_" + secrets.token_urlsafe(32)


async def _admin(url: str, statement: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def scratch_database(schemas: Sequence[str] | None = None) -> Iterator[str]:
    """A fresh database migrated to `schemas` (None: all; empty: none), dropped afterwards."""
    from services.cli.migrate import upgrade

    admin = admin_url()
    name = f"ringback_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        if schemas is None:
            upgrade(url)
        elif schemas:
            upgrade(url, list(schemas))
        yield url
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _redis_db(url: str, index: int) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return f"unix://{parsed.path}?db={index}"
    return parsed._replace(path=f"/{index}", query="").geturl()


@contextmanager
def scratch_redis() -> Iterator[str]:
    """A Redis database index of our own (claimed as the tests claim theirs), flushed after."""
    base = redis_base()
    control = redis.Redis.from_url(base)
    claimed: int | None = None
    try:
        for index in range(1, 16):
            if control.set(f"ringback:test-db:{index}", f"bench-{os.getpid()}", nx=True, ex=7200):
                claimed = index
                break
        if claimed is None:
            raise RuntimeError("every Redis database index 1-15 is claimed")
        url = _redis_db(base, claimed)
        redis.Redis.from_url(url).flushdb()
        yield url
    finally:
        if claimed is not None:
            redis.Redis.from_url(_redis_db(base, claimed)).flushdb()
            control.delete(f"ringback:test-db:{claimed}")
        control.close()


def base_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ringback process in a benchmark (no RINGBACK_* leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env.update(
        {
            "RINGBACK_DATABASE_URL": database_url,
            "RINGBACK_REDIS_URL": redis_url,
            "RINGBACK_INTERNAL_API_KEY": new_internal_key(),
            "RINGBACK_SELF_SERVICE_SECRET": "bench-self-service-secret",
            "RINGBACK_QUEUE_NAME": f"ringback:bench:{secrets.token_hex(4)}",
            "RINGBACK_LOG_LEVEL": "WARNING",
        }
    )
    for service in ("intake", "callback", "history"):
        port = free_port()
        env[f"RINGBACK_{service.upper()}_PORT"] = str(port)
        env[f"RINGBACK_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env["RINGBACK_PUBLIC_BASE_URL"] = env["RINGBACK_INTAKE_URL"]
    env.update(extra)
    return env


SERVICES = ("intake", "callback", "history")


def spawn(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """`ringback serve <service>` / `worker` / `relay`, output to `logs/<name>.log`."""
    argv = {"worker": ["worker"], "relay": ["intake-relay"]}.get(name, ["serve", name])
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        return subprocess.Popen(
            [SERVICE_PYTHON, "-m", "services.cli.main", *argv],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(
    process: subprocess.Popen[bytes], url: str, *, timeout: float = 60.0, every: float = 0.02
) -> float:
    """Seconds until `url`/readyz answers 200 (polled every `every` s)."""
    began = time.monotonic()
    with httpx.Client(timeout=1) as client:
        while time.monotonic() - began < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"process exited with {process.returncode} before ready")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            time.sleep(every)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Stack:
    """Ringback processes started for a benchmark; stopped (by pid) on exit."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.cold_start: dict[str, float] = {}

    def url(self, service: str) -> str:
        return self.env[f"RINGBACK_{service.upper()}_URL"]

    def start(self, *names: str) -> None:
        for name in names:
            self.processes[name] = spawn(name, self.env, self.logs)
            if name in SERVICES:
                self.cold_start[name] = wait_ready(self.processes[name], self.url(name))

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def close(self) -> None:
        for name in reversed(list(self.processes)):
            stop(self.processes.pop(name))

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# RSS -------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command may contain spaces and parentheses: the ppid follows the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def rss_bytes(pid: int, *, children: bool = True) -> int:
    """VmRSS of `pid` (and of its descendants): /proc/<pid>/status; 0 when it is gone."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total = int(line.split()[1]) * 1024
                break
    except OSError:
        return 0
    if children:
        total += sum(rss_bytes(child) for child in _children(pid))
    return total


class RssSampler:
    """Samples the RSS of named processes every `every` seconds in a thread; keeps the peaks."""

    def __init__(self, pids: dict[str, int], every: float = 0.25) -> None:
        self.pids = pids
        self.every = every
        self.peak = dict.fromkeys(pids, 0)
        self.last = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                value = rss_bytes(pid)
                self.last[name] = value
                self.peak[name] = max(self.peak[name], value)
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def percentiles(samples: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/max/mean of samples in seconds, as milliseconds (nearest rank)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.5) - 1))]

    return {
        "n": len(ordered),
        "p50_ms": round(rank(0.50) * scale, 3),
        "p90_ms": round(rank(0.90) * scale, 3),
        "p99_ms": round(rank(0.99) * scale, 3),
        "max_ms": round(ordered[-1] * scale, 3),
        "mean_ms": round(sum(ordered) / len(ordered) * scale, 3),
    }


# CPU -------------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of `pid` (and its descendants) so far, /proc/<pid>/stat; 0 if gone."""
    total = 0.0
    for each in [pid, *(_children(pid) if children else [])]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class CpuMeter:
    """CPU seconds spent by named processes and by one database's PostgreSQL backends.

    Processes: /proc/<pid>/stat of each (children included) at `start()` and `stop()`.
    PostgreSQL: the server forks a backend per connection, so the backends are found by
    asking the server (`pg_stat_activity` rows of the scratch database, autovacuum workers on
    it included), not by name: other databases on a shared server are not counted. A thread
    reads each backend's /proc/<pid>/stat every `every` seconds and keeps the last reading,
    so a backend that exits inside the window (a pool recycling a connection) still counts up
    to its last sample; one that starts inside the window counts from zero. The server's own
    processes (checkpointer, WAL writer, background writer) serve every database and are
    reported apart as `postgresql_shared`, not in the total.
    """

    def __init__(self, pids: dict[str, int], dsn: str, database: str, every: float = 0.5):
        self.pids, self.dsn, self.database, self.every = pids, dsn, database, every
        self._start: dict[str, float] = {}
        self._backends_start: dict[int, float] = {}
        self._backends_last: dict[int, float] = {}
        self._backend_names: dict[int, str] = {}
        self._shared_start = self._shared_end = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.began = 0.0

    async def _backend_pids(self, conn: asyncpg.Connection) -> tuple[list[int], list[int]]:
        mine = await conn.fetch(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        for r in mine:
            self._backend_names[r["pid"]] = r["application_name"] or "(unnamed)"
        shared = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE backend_type IN "
            "('checkpointer', 'walwriter', 'background writer')"
        )
        return [r["pid"] for r in mine], [r["pid"] for r in shared]

    async def _sample(self, conn: asyncpg.Connection) -> float:
        mine, shared = await self._backend_pids(conn)
        for pid in mine:
            value = cpu_seconds(pid, children=False)
            if value:
                self._backends_last[pid] = value
        return sum(cpu_seconds(pid, children=False) for pid in shared)

    def _run(self) -> None:
        async def loop() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                while not self._stop.is_set():
                    await self._sample(conn)
                    await asyncio.sleep(self.every)
                self._shared_end = await self._sample(conn)
            finally:
                await conn.close()

        asyncio.run(loop())

    def start(self) -> None:
        async def first() -> float:
            conn = await asyncpg.connect(self.dsn)
            try:
                shared = await self._sample(conn)
            finally:
                await conn.close()
            return shared

        self._shared_start = asyncio.run(first())
        self._backends_start = dict(self._backends_last)
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self, calls: int) -> dict[str, Any]:
        """Milliseconds of CPU per call of each process, PostgreSQL included, and the total."""
        ended = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        elapsed = time.monotonic() - self.began
        seconds = {name: ended[name] - self._start[name] for name in self.pids}
        seconds["postgresql"] = sum(
            last - self._backends_start.get(pid, 0.0) for pid, last in self._backends_last.items()
        )
        n = max(calls, 1)
        per_call = {name: round(value * 1000 / n, 2) for name, value in seconds.items()}
        # The backends' CPU by the client that opened them (`application_name`): which
        # process's statements the database spends its share on.
        by_client: dict[str, float] = {}
        for pid, last in self._backends_last.items():
            name = self._backend_names.get(pid, "(unnamed)")
            by_client[name] = by_client.get(name, 0.0) + last - self._backends_start.get(pid, 0.0)
        return {
            "cpu_ms_per_call": {**per_call, "total": round(sum(per_call.values()), 2)},
            "cpu_ms_per_call_postgresql_by_client": {
                name: round(value * 1000 / n, 2)
                for name, value in sorted(by_client.items(), key=lambda kv: -kv[1])
            },
            "cpu_ms_per_call_postgresql_shared": round(
                (self._shared_end - self._shared_start) * 1000 / n, 2
            ),
            "cpu_share_of_one_core": {
                name: round(value / elapsed, 3) for name, value in seconds.items()
            },
            "postgresql_backends_seen": len(self._backends_last),
            "window_seconds": round(elapsed, 1),
        }
