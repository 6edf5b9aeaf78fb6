"""A real PgBouncer in transaction pooling on a free port, in front of the test database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.infra import free_port

# Debian installs it under sbin, which an ordinary user's PATH may leave out.
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def pgbouncer_binary() -> str:
    """The `pgbouncer` program, or a skip saying how to get it (`make test` installs it)."""
    found = shutil.which("pgbouncer", path=_SEARCH)
    if found is None:
        pytest.skip("PgBouncer is not installed (as root: apt-get install pgbouncer)")
    return found


@dataclass
class PgBouncer:
    url: str  # the test database, through PgBouncer
    port: int
    log: Path


@contextmanager
def pgbouncer(database_url: str, log: Path, *, pool_size: int = 20) -> Iterator[PgBouncer]:
    """PgBouncer in `pool_mode = transaction` for `database_url`'s database (trust auth)."""
    binary = pgbouncer_binary()
    target = make_url(database_url)
    port = free_port()
    # PgBouncer refuses to run as root and drops to `user`: its files must be readable by it,
    # which pytest's private temporary directories are not.
    workdir = Path(tempfile.mkdtemp(prefix="ringback-pgbouncer-"))
    workdir.chmod(0o755)
    user = target.username or "postgres"
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(workdir / "users.txt"),
        "pool_mode": "transaction",
        "default_pool_size": str(pool_size),
        "max_client_conn": "500",
        # asyncpg names its process and SQLAlchemy asks for these on connect.
        "ignore_startup_parameters": "extra_float_digits",
    }
    if os.geteuid() == 0:
        settings["user"] = "postgres"
    database = target.database or "postgres"
    ini = "[databases]\n"
    ini += (
        f"{database} = host={target.host or '127.0.0.1'} port={target.port or 5432} "
        f"dbname={database} user={user}\n"
    )
    ini += "[pgbouncer]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    (workdir / "pgbouncer.ini").write_text(ini)
    for path in workdir.iterdir():
        path.chmod(0o644)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, str(workdir / "pgbouncer.ini")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, process, log)
        url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        yield PgBouncer(url=url, port=port, log=log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("pgbouncer did not listen in 10 s")
