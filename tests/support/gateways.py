"""Real network peers standing in for the outside world: an SMS gateway and an SMTP server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.infra import free_port


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SmsGateway:
    """An HTTP server on loopback that records every request and answers as told."""

    url: str = ""
    requests: list[GatewayRequest] = field(default_factory=list)
    # Status codes to answer with, in order, before answering 200 again.
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Requests that have arrived, answered or not (a slow gateway holds them for `delay`).
    arrived: int = 0

    def fail_next(self, *statuses: int) -> None:
        with self.lock:
            self.script.extend(statuses)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[GatewayRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"gateway got {len(self.requests)} requests, expected {count}")


@contextmanager
def sms_gateway(delay: float = 0.0) -> Iterator[SmsGateway]:
    """A gateway on loopback; `delay` seconds before each answer (a slow provider)."""
    gateway = SmsGateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                # The sender died mid-request (a killed worker): a real provider never sees
                # a message it did not receive whole, so neither does this one.
                return
            with gateway.lock:
                gateway.arrived += 1
            if delay:
                time.sleep(delay)
            with gateway.lock:
                gateway.requests.append(
                    GatewayRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = gateway.script.pop(0) if gateway.script else 200
            payload = json.dumps({"id": f"gw-{len(gateway.requests)}"}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpInbox:
    """Messages an SMTP server on loopback received, parsed as a mail client would."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Messages whose data has arrived, accepted or not (a slow server holds them for `delay`).
    arrived: int = 0

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"SMTP server got {len(self.messages)} messages, expected {count}")


@contextmanager
def smtp_server(delay: float = 0.0) -> Iterator[SmtpInbox]:
    """An SMTP server on loopback; `delay` seconds before accepting each message's data."""
    inbox = SmtpInbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with inbox.lock:
                inbox.arrived += 1
            if delay:
                await asyncio.sleep(delay)
            message = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            with inbox.lock:
                inbox.messages.append(message)
                inbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            return "250 Message accepted for delivery"

    inbox.port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
