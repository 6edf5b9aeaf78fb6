"""A loopback server speaking Twilio's Calls API, and the test playing Twilio back at us.

`POST /2010-04-01/Accounts/{sid}/Calls.json`, form-encoded with basic auth, answered 201 with
the call's `sid`, as Twilio documents it. Requests to intake are signed with the official
`twilio` package's `RequestValidator`, exactly as Twilio signs them.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-test-auth-token-0123456789"


@dataclass
class PlacedCall:
    sid: str
    form: dict[str, list[str]]

    def one(self, name: str) -> str:
        [value] = self.form[name]
        return value

    def twiml(self) -> ET.Element:
        return ET.fromstring(self.one("Twiml"))


@dataclass
class TwilioCalls:
    url: str = ""
    calls: list[PlacedCall] = field(default_factory=list)
    arrived: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Cleared: requests are held (a slow Twilio) until it is set again.
    answering: threading.Event = field(default_factory=threading.Event)
    refused_auth: int = 0

    def wait_for(self, count: int, timeout: float = 20.0) -> list[PlacedCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.05)
        raise AssertionError(f"Twilio got {len(self.calls)} calls, expected {count}")

    def wait_arrived(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.arrived >= count:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.arrived} requests arrived, expected {count}")


_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Calls\.json$")


@contextmanager
def twilio_calls_api() -> Iterator[TwilioCalls]:
    api = TwilioCalls()
    api.answering.set()
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            import json

            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:
                return
            match = _PATH.match(self.path)
            if match is None or match["sid"] != ACCOUNT_SID:
                self._answer(
                    404, {"code": 20404, "message": "The requested resource was not found"}
                )
                return
            if self.headers.get("authorization") != expected_auth:
                with api.lock:
                    api.refused_auth += 1
                self._answer(401, {"code": 20003, "message": "Authenticate"})
                return
            with api.lock:
                api.arrived += 1
            api.answering.wait(60)
            form = parse_qs(body.decode(), keep_blank_values=True)
            with api.lock:
                sid = f"CA{len(api.calls) + 1:032x}"
                api.calls.append(PlacedCall(sid=sid, form=form))
            self._answer(201, {"sid": sid, "status": "queued", "account_sid": ACCOUNT_SID})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.answering.set()
        server.shutdown()
        server.server_close()


async def play(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> httpx.Response:
    """POST `params` to `url` as Twilio does: form-encoded, signed with the auth token."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return await client.post(url, data=params, headers={"x-twilio-signature": signature})


def call_params(sid: str, status: str, **extra: str) -> dict[str, str]:
    """A status callback's form, as Twilio sends it (numbers included)."""
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "CallStatus": status,
        "ApiVersion": "2010-04-01",
        "Direction": "outbound-api",
        "From": "+358942451000",
        "To": "+358401110000",
        **extra,
    }
