"""A loopback SMS gateway in a process of its own, for the benchmarks.

    python bench/sms_gateway.py [--port 0] [--delay-ms 0]

Speaks just enough HTTP/1.1 (keep-alive, content-length bodies) on asyncio (uvloop when
present), so neither the worker's sends nor the benchmark's own load share its interpreter.
Every POST is answered 202 `{"id": "gw-N"}` at once and recorded with its arrival time
(`time.monotonic()`, the system-wide CLOCK_MONOTONIC on Linux, comparable across processes)
and the JSON body's `to` and `reference`. `GET /stats` answers `{"count": N}`; `GET /dump`
answers every record as `[[arrival, to, reference], ...]`. Prints `listening <port>` once it is.
`--delay-ms`: each SMS is answered that long after it arrived (a real provider answers in
100-500 ms), while the connection's next request waits, as on a real keep-alive connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class Gateway:
    def __init__(self, delay: float = 0.0) -> None:
        self.records: list[tuple[float, str, str]] = []
        self.delay = delay

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = time.monotonic()
                match = _LENGTH.search(head)
                body = await reader.readexactly(int(match.group(1))) if match else b""
                method, path = head.split(b" ", 2)[:2]
                if method == b"POST":
                    try:
                        doc = json.loads(body)
                        self.records.append(
                            (arrived, str(doc.get("to")), str(doc.get("reference")))
                        )
                    except ValueError:
                        self.records.append((arrived, "", ""))
                    status = b"202 Accepted"
                    payload = json.dumps({"id": f"gw-{len(self.records)}"}).encode()
                    if self.delay:
                        await asyncio.sleep(self.delay)
                elif path == b"/stats":
                    status, payload = b"200 OK", json.dumps({"count": len(self.records)}).encode()
                elif path == b"/dump":
                    status, payload = b"200 OK", json.dumps(self.records).encode()
                else:
                    status, payload = b"404 Not Found", b"{}"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def serve(port: int, delay: float = 0.0) -> None:
    gateway = Gateway(delay)
    server = await asyncio.start_server(gateway.handle, "127.0.0.1", port, backlog=1024)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class GatewayProcess:
    """Runs this file as a child process; `url` is its SMS endpoint."""

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", "0"]
            + (["--delay-ms", str(delay_ms)] if delay_ms else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.process.kill()
            raise RuntimeError("the SMS gateway did not start")
        self.base = f"http://127.0.0.1:{line[1]}"
        self.url = f"{self.base}/v1/messages"
        self.pid = self.process.pid

    def count(self) -> int:
        return int(httpx.get(f"{self.base}/stats", timeout=10).json()["count"])

    def dump(self) -> list[tuple[float, str, str]]:
        rows: list[Any] = httpx.get(f"{self.base}/dump", timeout=60).json()
        return [(float(a), str(t), str(r)) for a, t, r in rows]

    def wait_for(self, count: int, timeout: float, every: float = 0.2) -> int:
        deadline = time.monotonic() + timeout
        seen = self.count()
        while seen < count and time.monotonic() < deadline:
            time.sleep(every)
            seen = self.count()
        return seen

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, delay))
        return
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(serve(args.port, delay))


if __name__ == "__main__":
    main()
