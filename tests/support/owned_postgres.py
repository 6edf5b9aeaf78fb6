"""A PostgreSQL server a test owns outright: its own data directory, port and lifetime.

Fault tests that stop and start PostgreSQL must never touch the machine's shared server; this
one runs the binaries the `pgserver` wheel ships (`initdb`, `pg_ctl`) on a free TCP port on
loopback, with its socket in its own directory. As root (PostgreSQL refuses to run as root) it
runs them as the unprivileged system user pgserver itself uses.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.infra import free_port

_SYSTEM_USER = "pgserver"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR warning on import
        import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


@dataclass
class OwnedPostgres:
    """One PostgreSQL cluster under `directory`, listening on 127.0.0.1:`port`."""

    directory: Path
    port: int = field(default_factory=free_port)
    user: str | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        subprocess.run(
            [str(_bin_dir() / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            **kwargs,
        )

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver.utils import (
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )
            import stat

            entry = ensure_user_exists(_SYSTEM_USER)
            assert entry is not None
            bin_dir = _bin_dir()
            ensure_prefix_permissions(bin_dir)
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(bin_dir.parent / "lib", readable)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self.user = _SYSTEM_USER
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=utf8",
            "--no-sync",
        )  # fmt: skip

    def start(self, timeout: float = 60.0) -> None:
        """Start (or start again) on the same data directory and port; wait until it answers."""
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.directory} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
            "-t", str(int(timeout)), "start",
            timeout=timeout + 10,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"owned PostgreSQL did not listen on {self.port}:\n{self.tail()}")

    def stop(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """`pg_ctl stop -m <mode>`: fast rolls back open transactions and cuts every client."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop",
            timeout=timeout + 10,
        )  # fmt: skip

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def owned_postgres() -> Iterator[OwnedPostgres]:
    """A fresh cluster in a temporary directory, stopped and removed afterwards."""
    # Not under pytest's tmp_path: as root, the server's user must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="ringback-owned-pg-"))
    server = OwnedPostgres(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            try:
                server.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                pass
        shutil.rmtree(directory, ignore_errors=True)
