"""Local development state under `.data/`: embedded servers and generated secrets.

Used by `ringback run`, `ringback demo` and the CLI when `RINGBACK_DATABASE_URL` /
`RINGBACK_REDIS_URL` are unset, so a bare machine needs no configuration at all.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from services.cli.embedded import EmbeddedPostgres, EmbeddedRedis


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
