"""Local development state under `.data/`: embedded servers, generated secrets, and where
`make run` listens.

Used by `ringback run`, `ringback demo` and the CLI when `RINGBACK_DATABASE_URL` /
`RINGBACK_REDIS_URL` are unset, so a bare machine needs no configuration at all.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from services.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from shared.settings import CommonSettings

SERVICES = ("intake", "callback", "history")
# Where `make run` says it listens, for `make demo` (and the other commands) in another
# terminal, which may not have the `RINGBACK_*_PORT` variables `make run` was started with.
RUN_RECORD = "run.json"


def data_dir() -> Path:
    return Path(os.environ.get("RINGBACK_DATA_DIR", ".data")).resolve()


def dev_secrets() -> dict[str, str]:
    """Secrets for local runs, generated once and kept in `.data/dev-secrets.json` (mode 600)."""
    path = data_dir() / "dev-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted: dict[str, Callable[[], str]] = {
        "RINGBACK_INTERNAL_API_KEY": lambda: "rb_internal0000_" + secrets.token_urlsafe(32),
        "RINGBACK_SELF_SERVICE_SECRET": lambda: secrets.token_urlsafe(32),
        "RINGBACK_WEBHOOK_SECRETS": lambda: (
            "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        ),
        "RINGBACK_CTI_TOKEN": lambda: secrets.token_urlsafe(24),
        # Replies to the survey come back signed with this (`make demo` sends one).
        "RINGBACK_INBOUND_SMS_WEBHOOK_SECRETS": lambda: (
            "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        ),
        # Not a secret: the number surveys go from locally, into the development sink. A
        # made-up number in the range kept for drama (Ofcom's 07700 900xxx).
        "RINGBACK_SURVEY_FROM": lambda: "+447700900123",
    }
    changed = False
    for name, make in wanted.items():
        if name not in stored:
            stored[name] = make()
            changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored


def save_dev_value(name: str, value: str) -> None:
    path = data_dir() / "dev-secrets.json"
    stored = dev_secrets()
    stored[name] = value
    path.write_text(json.dumps(stored, indent=2))


def embedded_postgres() -> EmbeddedPostgres:
    return EmbeddedPostgres(data_dir() / "pg")


def embedded_redis() -> EmbeddedRedis:
    return EmbeddedRedis(data_dir() / "redis")


def ensure_database_url() -> tuple[str, EmbeddedPostgres | None]:
    """The configured database URL, or the embedded server's (started if need be)."""
    configured = os.environ.get("RINGBACK_DATABASE_URL")
    if configured:
        return configured, None
    server = embedded_postgres()
    return server.start(), server


def default_port(service: str) -> int:
    """A service's port when `RINGBACK_<SERVICE>_PORT` is unset: the settings' own default."""
    default = CommonSettings.model_fields[f"{service}_port"].default
    assert isinstance(default, int)
    return default


def listen_urls(env: Mapping[str, str]) -> dict[str, str]:
    """Where `ringback serve` listens for each service when started with `env`."""
    host = env.get("RINGBACK_HOST") or "127.0.0.1"
    # A wildcard address is where a server listens, not where a client connects.
    if host in {"0.0.0.0", "::", "[::]"}:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ports = {s: env.get(f"RINGBACK_{s.upper()}_PORT") or default_port(s) for s in SERVICES}
    return {service: f"http://{host}:{port}" for service, port in ports.items()}


def record_run(urls: Mapping[str, str]) -> None:
    """Note where this `make run` listens, until `forget_run`."""
    path = data_dir() / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "urls": dict(urls)}, indent=2))


def forget_run() -> None:
    """Remove this process's record (another `make run`'s is left alone)."""
    path = data_dir() / RUN_RECORD
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(path.read_text())["pid"]) == os.getpid():
            path.unlink()


def recorded_urls() -> dict[str, str]:
    """What a running `make run` recorded; nothing if none runs (or it was killed outright)."""
    try:
        record = json.loads((data_dir() / RUN_RECORD).read_text())
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return {}
    except PermissionError:
        pass  # alive, someone else's: its record still says where it listens
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    urls = record.get("urls")
    if not isinstance(urls, dict):
        return {}
    return {name: str(url) for name, url in urls.items() if name in SERVICES}


def service_url(
    service: str, override: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """A service's base URL: `override`, else `RINGBACK_<SERVICE>_URL`, else
    `RINGBACK_<SERVICE>_PORT` on loopback, else what `make run` recorded, else the default port.
    """
    env = os.environ if env is None else env
    prefix = f"RINGBACK_{service.upper()}"
    if override:
        return override.rstrip("/")
    if configured := env.get(f"{prefix}_URL"):
        return configured.rstrip("/")
    if port := env.get(f"{prefix}_PORT"):
        return f"http://127.0.0.1:{port}"
    if recorded := recorded_urls().get(service):
        return recorded.rstrip("/")
    return f"http://127.0.0.1:{default_port(service)}"
