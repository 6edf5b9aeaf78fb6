"""A subscriber on loopback: receives webhooks, verifies each with `standardwebhooks`, answers
as told (a status script, or hanging like a dead server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request, whatever it answered."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    # Status codes to answer with, in order, then `status`.
    script: list[int] = field(default_factory=list)
    status: int = 200
    # Seconds to hold each request before answering (a hanging subscriber).
    hang: float = 0.0
    # The `webhook-id` of every request as it arrived, answered or not.
    arrived: list[str] = field(default_factory=list)
    # Requests held at once, now and at most.
    holding: int = 0
    most_held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, status: int) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status == status]

    def wait_for(self, count: int, *, status: int = 200, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.answered(status)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"receiver answered {status} to {len(self.answered(status))} requests, "
            f"expected {count} (all: {[r.status for r in self.received]})"
        )


def verify(secret: str, request: Received) -> Any:
    """The body as the official library verifies it; raises if the signature is wrong."""
    return Webhook(secret).verify(request.body, request.headers)


def verifies(secret: str, request: Received) -> bool:
    try:
        verify(secret, request)
    except WebhookVerificationError:
        return False
    return True


@contextmanager
def webhook_receiver(**options: Any) -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 at a free port; keyword arguments set its fields."""
    receiver = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                status = receiver.script.pop(0) if receiver.script else receiver.status
                hang = receiver.hang
                receiver.arrived.append(self.headers.get("webhook-id", ""))
                receiver.holding += 1
                receiver.most_held = max(receiver.most_held, receiver.holding)
            if hang:
                time.sleep(hang)
            with receiver.lock:
                receiver.holding -= 1
            with receiver.lock:
                receiver.received.append(
                    Received({k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            try:
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
