"""A real Redis master, its replica and one Sentinel watching them, each on a free port."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.infra import free_port

MASTER_NAME = "ringback"
# How long the sentinel waits before it calls a silent master down, and how long a failover
# may take: short, so a test's failover takes seconds (the manifests use 5 s and 60 s).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10000


def sentinel_binaries() -> tuple[str, str]:
    """`redis-server` and `redis-sentinel`, or a skip saying how to get them."""
    server = shutil.which("redis-server")
    sentinel = shutil.which("redis-sentinel")
    if server is None or sentinel is None:
        pytest.skip("Redis Sentinel is not installed (as root: apt-get install redis-sentinel)")
    return server, sentinel


@dataclass
class SentinelSet:
    sentinel_port: int
    ports: dict[str, int]  # "master" and "replica", as started
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """`RINGBACK_REDIS_URL` for ringback: the sentinel, the master's name, database 0."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0"

    def master_port(self) -> int | None:
        """The port the sentinel names as master now (None while it cannot say)."""
        client = redis.Redis(port=self.sentinel_port, socket_timeout=1)
        try:
            address = client.sentinel_get_master_addr_by_name(MASTER_NAME)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            client.close()
        return int(address[1]) if address else None

    def kill(self, role: str) -> None:
        process = self.processes.pop(role)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def log(self, role: str) -> str:
        path = self.workdir / f"{role}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    """Start master, replica (in sync) and a sentinel of quorum 1; stop them all after."""
    server, sentinel = sentinel_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="ringback-sentinel-"))
    ports = {"master": free_port(), "replica": free_port()}
    running = SentinelSet(sentinel_port=free_port(), ports=ports, workdir=workdir)
    try:
        for role, port in ports.items():
            argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "no", "--dir", str(workdir)]
            argv += ["--dbfilename", f"{role}.rdb"]
            if role == "replica":
                argv += ["--replicaof", "127.0.0.1", str(ports["master"])]
            running.processes[role] = _start(argv, workdir / f"{role}.log")
            _wait_ping(port, running, role)
        _wait_in_sync(ports["master"])
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {running.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {ports['master']} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        running.processes["sentinel"] = _start([sentinel, str(conf)], workdir / "sentinel.log")
        _wait_ping(running.sentinel_port, running, "sentinel")
        deadline = time.monotonic() + 10
        while running.master_port() != ports["master"]:
            assert time.monotonic() < deadline, running.log("sentinel")
            time.sleep(0.05)
        yield running
    finally:
        for process in running.processes.values():
            process.terminate()
        for process in running.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ping(port: int, running: SentinelSet, role: str) -> None:
    deadline = time.monotonic() + 10
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        while time.monotonic() < deadline:
            assert running.processes[role].poll() is None, running.log(role)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"{role} did not answer in 10 s:\n{running.log(role)}")


def _wait_in_sync(master_port: int) -> None:
    client = redis.Redis(port=master_port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info: dict[str, Any] = client.info("replication")  # type: ignore[assignment]
            if info.get("connected_slaves") and info.get("slave0", {}).get("state") == "online":
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("the replica did not catch up with the master in 10 s")
