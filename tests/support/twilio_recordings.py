"""A loopback server speaking Twilio's Recordings API, for voicemail (§11).

`GET /2010-04-01/Accounts/{sid}/Recordings/{RecordingSid}.mp3` (or `.wav`) answers the audio,
and `DELETE /2010-04-01/Accounts/{sid}/Recordings/{RecordingSid}` (optionally `.json`)
deletes it with 204, as Twilio documents them; both need HTTP basic auth `sid:token`, and a
recording deleted (or never made) is 404. `fail_deletes(503, times=2)` makes the next DELETEs
fail as a Twilio outage would, before the recording is even looked up. With
`twilio_recordings_api(public_media=True)` the audio is served without auth, as Twilio does
for an account that has not turned on "HTTP basic authentication for media" (and as a PBX
serves its own recording URLs).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.twilio_calls import ACCOUNT_SID, AUTH_TOKEN

_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})/Recordings/"
    r"(?P<sid>RE[0-9a-f]{32})(?P<ext>\.mp3|\.wav|\.json)?$"
)


@dataclass
class TwilioRecordings:
    url: str = ""
    # Recording SID -> its audio.
    audio: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    # Every DELETE that arrived, failed or not (its recording SID, or the path if none).
    delete_requests: list[str] = field(default_factory=list)
    refused_auth: int = 0
    delete_failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sid: str, audio: bytes) -> str:
        """Hold a recording; its `RecordingUrl` as Twilio sends it (no extension)."""
        with self.lock:
            self.audio[sid] = audio
        return f"{self.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{sid}"

    def fail_deletes(self, status: int, times: int = 1) -> None:
        """Answer the next `times` DELETEs with `status` (Twilio down: 503, 500...)."""
        with self.lock:
            self.delete_failures.extend([status] * times)


@contextmanager
def twilio_recordings_api(*, public_media: bool = False) -> Iterator[TwilioRecordings]:
    api = TwilioRecordings()
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _problem(self, status: int, code: int, message: str) -> None:
            data = json.dumps({"code": code, "message": message, "status": status}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _recording(self, *, public: bool = False) -> tuple[str, str] | None:
            match = _PATH.match(self.path)
            if match is None or match["account"] != ACCOUNT_SID:
                self._problem(404, 20404, "The requested resource was not found")
                return None
            if not public and self.headers.get("authorization") != expected_auth:
                with api.lock:
                    api.refused_auth += 1
                self._problem(401, 20003, "Authenticate")
                return None
            with api.lock:
                known = match["sid"] in api.audio
            if not known:
                self._problem(404, 20404, "The requested resource was not found")
                return None
            return match["sid"], match["ext"] or ""

        def do_GET(self) -> None:
            found = self._recording(public=public_media)
            if found is None:
                return
            sid, ext = found
            with api.lock:
                data = api.audio[sid]
                api.fetched.append(sid)
            self.send_response(200)
            self.send_header("content-type", "audio/x-wav" if ext == ".wav" else "audio/mpeg")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_DELETE(self) -> None:
            match = _PATH.match(self.path)
            with api.lock:
                api.delete_requests.append(match["sid"] if match else self.path)
                failure = api.delete_failures.pop(0) if api.delete_failures else None
            if failure is not None:
                self._problem(failure, 20500, "Service unavailable")
                return
            found = self._recording()
            if found is None:
                return
            sid, _ = found
            with api.lock:
                del api.audio[sid]
                api.deleted.append(sid)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
