"""Two of every ringback process, each API behind a small round-robin, as a scaled-out cluster."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.infra import free_port
from tests.support.stack import SERVICES, Stack

# The order a cluster comes up in: what a process calls at start is up before it.
ORDER = ("history", "callback", "intake", "worker", "relay")


class RoundRobin:
    """A TCP round-robin on loopback: each new connection goes to the next backend that answers.

    Layer 4, like a Kubernetes Service: a kept-alive HTTP connection stays with its backend
    until either side closes it, and a backend that refuses connections is skipped.
    """

    def __init__(self, backends: list[int]) -> None:
        self.port = free_port()
        self.backends = backends
        self.connections: dict[int, int] = dict.fromkeys(backends, 0)
        self._next = itertools.cycle(backends)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"round-robin:{self.port}")
        self._server: asyncio.Server | None = None
        # asyncio keeps only a weak reference to the task serving a connection: once both of
        # its sockets are gone it could be collected mid-`gather`, leaving its writers
        # unclosed (a warning the test run fails on). Held here until it ends.
        self._serving: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            # Connections accepted while the first ones wind down start tasks of their own:
            # cancel until none is left, so no task or transport outlives the loop.
            while tasks := asyncio.all_tasks(self._loop):
                for task in tasks:
                    task.cancel()
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for _ in self.backends:
            port = next(self._next)
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                self.connections[port] += 1
                break
        if upstream is None:
            await _close(writer)
            return
        up_reader, up_writer = upstream
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                await _close(w)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait for it, so no transport is left closing when the loop ends."""
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


@dataclass
class Pairs:
    """Two stacks sharing one database, one Redis and a round-robin per API."""

    stacks: list[Stack]
    balancers: dict[str, RoundRobin]
    killed: list[str] = field(default_factory=list)

    def url(self, service: str) -> str:
        """The service as its callers see it: the round-robin in front of both instances."""
        return self.balancers[service].url

    def own_url(self, service: str, index: int) -> str:
        return self.stacks[index].own_url(service)

    def kill_and_restart(self, name: str, index: int) -> None:
        """SIGKILL process `name` of instance `index` and start it again at once."""
        stack = self.stacks[index]
        stack.stop(name, signal.SIGKILL)
        self.killed.append(f"{name}#{index}")
        stack.start(name)

    def tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(f"[{i}] {s.tail(name, lines)}" for i, s in enumerate(self.stacks))


@contextmanager
def running_pairs(base_env: dict[str, str], logs: Path, extra: dict[str, str]) -> Iterator[Pairs]:
    """Start two of each process (`ORDER`), every API behind its round-robin."""
    ports = {service: [free_port(), free_port()] for service in SERVICES}
    balancers = {service: RoundRobin(ports[service]) for service in SERVICES}
    shared = {key: value for key, value in os.environ.items() if not key.startswith("RINGBACK_")}
    shared.update(base_env)
    for service in SERVICES:
        shared[f"RINGBACK_{service.upper()}_URL"] = balancers[service].url
    shared["RINGBACK_LOG_LEVEL"] = "INFO"
    shared["RINGBACK_PUBLIC_BASE_URL"] = balancers["intake"].url
    shared.update(extra)
    stacks = []
    for index in range(2):
        env = dict(shared)
        for service in SERVICES:
            env[f"RINGBACK_{service.upper()}_PORT"] = str(ports[service][index])
        (logs / str(index)).mkdir(parents=True, exist_ok=True)
        stacks.append(Stack(env=env, logs=logs / str(index)))
    pairs = Pairs(stacks=stacks, balancers=balancers)
    for balancer in balancers.values():
        balancer.start()
    try:
        for name in ORDER:
            for stack in stacks:
                stack.start(name)
        yield pairs
    finally:
        for stack in stacks:
            for name in list(stack.processes):
                stack.stop(name)
        for balancer in balancers.values():
            balancer.stop()
