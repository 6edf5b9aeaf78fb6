"""Load generators shared by the benchmarks.

- `presign`: distinct signed missed calls (new event id, call id, webhook-id and caller each),
  made before any clock starts.
- `run_wrk_requests`: `wrk` cycling through such pre-built requests (a Lua script builds them
  with `wrk.format` from a file at init; each wrk thread takes its own slice, so no request is
  sent twice unless the pool runs out, which is counted as `wrapped`).
- `paced`: an open-loop generator at a fixed offered rate. Debian's `wrk` has no constant-rate
  mode (that is wrk2), and pacing wrk with the Lua `delay()` hook measures from when each
  connection actually sends, hiding queueing when the server falls behind (coordinated
  omission). So this is Python (uvloop when present) on raw asyncio streams: request i is due at
  t0 + i/rate whether or not earlier ones have been answered, bytes are pre-built, any idle
  keep-alive connection takes it (a new one is opened when none is idle), and latency is
  counted from the due time, so generator lateness and queueing are inside the figure. At
  1,000 req/s its own cost is a few per cent of one core; `late_ms` says how far behind
  schedule it sent, to show when it is the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common import WEBHOOK_PATH, percentiles

from shared.standard_webhooks import sign

T = TypeVar("T")


def run_fast(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@dataclass
class Signed:
    msg_id: str
    timestamp: int
    signature: str
    body: bytes
    phone: str

    def raw(self, host: str, path: str = WEBHOOK_PATH) -> bytes:
        """The whole HTTP/1.1 request, ready to write to a socket."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(self.body)}\r\nwebhook-id: {self.msg_id}\r\n"
            f"webhook-timestamp: {self.timestamp}\r\nwebhook-signature: {self.signature}\r\n\r\n"
        )
        return head.encode() + self.body


def phone_of(tag_number: int, i: int) -> str:
    """A Finnish mobile number per (run tag number, i): +358 50 xxx xxxx, distinct for tags
    below 100 and `i` below 100,000. (`tag * 1,000,003 + i` wrapped around: bench/webhooks.py's
    tag 11 reused 20 numbers of its warm-up's tag 1, whose earlier SMS made those calls'
    latencies negative.) Only intake's own saturation pools go past 100,000, and there no
    callback is made from them."""
    return f"+35850{(tag_number * 100_000 + i) % 10_000_000:07d}"


def presign(secret: str, count: int, tag: str, *, tag_number: int = 0) -> list[Signed]:
    """`count` distinct missed calls signed now (timestamps must stay within the tolerance)."""
    now = int(time.time())
    # The call happened now: a call from days ago is past its SLA deadline, and the worker's
    # expiry would close it before its confirmation is sent.
    occurred_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    signed = []
    for i in range(count):
        phone = phone_of(tag_number, i)
        event = {
            "id": f"evt_{tag}_{i}",
            "call_id": f"bench-{tag}-{i}",
            "from": phone,
            "to": "+358942451000",
            "status": "no_answer",
            "occurred_at": occurred_at,
            "queue": "billing",
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        msg_id = f"msg_{tag}_{i}"
        signed.append(Signed(msg_id, now, sign(secret, msg_id, now, body), body, phone))
    return signed


# wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

# Reports the figures as `RB <key> <value>` lines, so nothing depends on wrk's human output.
_DONE = """
function done(summary, latency, requests)
  io.write(string.format("RB requests %d\\n", summary.requests))
  io.write(string.format("RB duration_us %d\\n", summary.duration))
  io.write(string.format("RB errors_connect %d\\n", summary.errors.connect))
  io.write(string.format("RB errors_read %d\\n", summary.errors.read))
  io.write(string.format("RB errors_write %d\\n", summary.errors.write))
  io.write(string.format("RB errors_timeout %d\\n", summary.errors.timeout))
  io.write(string.format("RB non_2xx %d\\n", summary.errors.status))
  for _, p in ipairs({50, 90, 99}) do
    io.write(string.format("RB p%d_us %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("RB max_us %d\\n", latency.max))
  io.write(string.format("RB mean_us %f\\n", latency.mean))
  local wrapped = 0
  for _, t in ipairs(thread_list or {}) do
    wrapped = wrapped + (t:get("wrapped") or 0)
  end
  io.write(string.format("RB wrapped %d\\n", wrapped))
end
"""

_BODY_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""

# One request per line: webhook-id TAB timestamp TAB signature TAB body (compact JSON).
_FILE_SCRIPT = """
thread_list = {{}}
local nthreads = {threads}

function setup(thread)
  thread:set("index", #thread_list)
  table.insert(thread_list, thread)
end

function init(args)
  pool = {{}}
  local i = 0
  for line in io.lines("{file}") do
    if i % nthreads == index then
      local id, ts, sig, body = line:match("^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$")
      pool[#pool + 1] = wrk.format("POST", "{path}", {{
        ["Content-Type"] = "application/json",
        ["webhook-id"] = id,
        ["webhook-timestamp"] = ts,
        ["webhook-signature"] = sig,
      }}, body)
    end
    i = i + 1
  end
  n = 0
  wrapped = 0
end

function request()
  n = n + 1
  if n > #pool then
    n = 1
    wrapped = wrapped + 1
  end
  return pool[n]
end
"""


def wrk_available() -> bool:
    import shutil

    return shutil.which("wrk") is not None


class WrkMissing(RuntimeError):
    pass


def _run_wrk(
    url: str, script: str, *, seconds: float, connections: int, threads: int
) -> dict[str, Any]:
    if not wrk_available():
        raise WrkMissing("wrk is not installed: `apt-get install -y wrk` (Debian package `wrk`)")
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + _DONE)
        path = f.name
    try:
        argv = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            path,
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        Path(path).unlink(missing_ok=True)
    figures = dict(re.findall(r"^RB (\w+) (\S+)$", done.stdout, re.M))
    if done.returncode != 0 or "requests" not in figures:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    duration = float(figures["duration_us"]) / 1e6
    requests = int(figures["requests"])
    errors = sum(int(figures[k]) for k in figures if k.startswith("errors_"))
    return {
        "threads": threads,
        "connections": connections,
        "seconds": round(duration, 3),
        "requests": requests,
        "requests_per_second": round(requests / duration, 1) if duration else 0.0,
        "p50_ms": float(figures["p50_us"]) / 1000,
        "p90_ms": float(figures["p90_us"]) / 1000,
        "p99_ms": float(figures["p99_us"]) / 1000,
        "max_ms": float(figures["max_us"]) / 1000,
        "mean_ms": round(float(figures["mean_us"]) / 1000, 3),
        "non_2xx": int(figures["non_2xx"]),
        "socket_errors": errors,
        "wrapped": int(figures["wrapped"]),
    }


def run_wrk_body(
    url: str, body: str, *, seconds: float, connections: int = 64, threads: int = 2
) -> dict[str, Any]:
    """wrk POSTing the same JSON `body` to `url` (the floors)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(body)
        script = _BODY_SCRIPT.format(body=body_file)
        return _run_wrk(url, script, seconds=seconds, connections=connections, threads=threads)


def run_wrk_requests(
    base_url: str,
    signed: Sequence[Signed],
    *,
    seconds: float,
    connections: int = 64,
    threads: int = 2,
    path: str = WEBHOOK_PATH,
) -> dict[str, Any]:
    """wrk sending each pre-signed request once (cycling only if the pool runs out)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "requests.tsv"
        with pool.open("wb") as f:
            for s in signed:
                f.write(f"{s.msg_id}\t{s.timestamp}\t{s.signature}\t".encode() + s.body + b"\n")
        script = _FILE_SCRIPT.format(threads=threads, file=pool, path=path)
        return _run_wrk(
            base_url + path, script, seconds=seconds, connections=connections, threads=threads
        )


# The paced (open-loop) generator -----------------------------------------------------------


@dataclass
class Paced:
    rate: float
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    connections_opened: int = 0
    # Per request: (due, sent, answered) monotonic seconds; answered is 0.0 for errors.
    timings: list[tuple[float, float, float, int]] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = [(d, s, a) for d, s, a, st in self.timings if 200 <= st < 300]
        return {
            "offered_per_second": self.rate,
            "requests": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "seconds": round(self.elapsed, 3),
            "achieved_per_second": round(len(ok) / self.elapsed, 1) if self.elapsed else 0.0,
            "connections_opened": self.connections_opened,
            # From when the request was due: queueing and generator lateness included.
            "latency": percentiles([a - d for d, _, a in ok]),
            # From when it was written to the socket.
            "service_latency": percentiles([a - s for _, s, a in ok]),
            "late_ms": percentiles([s - d for d, s, _ in ok]),
        }


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


async def paced(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    *,
    max_connections: int = 1024,
    warm_connections: int = 16,
) -> Paced:
    """Send `requests[i]` at t0 + i/rate, open loop, over keep-alive connections.

    At most `max_connections` are open; a request due while all are busy waits for the next
    one to come back (its latency, counted from its due time, shows the wait). A connection
    that fails gives its place to a new one, so waiters are never stranded.
    """
    result = Paced(rate=rate)
    Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
    # Idle connections; None stands for a free place where a new connection may be opened.
    idle: asyncio.Queue[Connection | None] = asyncio.Queue()
    opened = 0
    for _ in range(warm_connections):
        idle.put_nowait(await asyncio.open_connection(host, port))
        opened += 1
    for _ in range(max_connections - warm_connections):
        idle.put_nowait(None)
    timings: list[tuple[float, float, float, int]] = [(0.0, 0.0, 0.0, 0)] * len(requests)

    async def checkout() -> Connection:
        nonlocal opened
        connection = await idle.get()
        if connection is not None and connection[0].at_eof():
            # The server closed it while idle (uvicorn's keep-alive timeout is 5 s): sending on
            # it would fail a request the server never saw, so open a new one instead.
            connection[1].close()
            connection = None
        if connection is None:
            try:
                connection = await asyncio.open_connection(host, port)
            except OSError:
                idle.put_nowait(None)
                raise
            opened += 1
        return connection

    async def one(i: int, raw: bytes, due: float) -> None:
        try:
            reader, writer = await checkout()
        except OSError:
            result.errors += 1
            timings[i] = (due, time.monotonic(), 0.0, 0)
            return
        sent = time.monotonic()
        try:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            match = _LENGTH.search(head)
            if match is None:
                raise ValueError("no content-length in the answer")
            await reader.readexactly(int(match.group(1)))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            result.errors += 1
            timings[i] = (due, sent, 0.0, 0)
            writer.close()
            idle.put_nowait(None)
            return
        answered = time.monotonic()
        timings[i] = (due, sent, answered, status)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if b"connection: close" in head.lower():
            writer.close()
            idle.put_nowait(None)
        else:
            idle.put_nowait((reader, writer))

    tasks = []
    began = time.monotonic() + 0.01
    for i, raw in enumerate(requests):
        due = began + i / rate
        delay = due - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, raw, due)))
    await asyncio.gather(*tasks)
    result.elapsed = max((t[2] for t in timings), default=began) - began
    result.sent = len(requests)
    result.connections_opened = opened
    result.timings = timings
    while not idle.empty():
        connection = idle.get_nowait()
        if connection is not None:
            connection[1].close()
            with contextlib.suppress(OSError):
                await connection[1].wait_closed()
    return result
