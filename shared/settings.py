"""Settings shared by every process, read from `RINGBACK_*` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.redis_url import check_redis_url
from shared.secret_policy import refusal, url_password_refusal
from shared.vocabulary import Language

Environment = Literal["development", "test", "production"]

# Keys we sign or authenticate with: production wants 32 random bytes in each.
SIGNING_KEYS = frozenset(
    {"internal_api_key", "self_service_secret", "self_service_previous_secrets"}
)
# Of those, the ones production cannot run without; the others are judged only when set.
_REQUIRED_SIGNING_KEYS = frozenset({"internal_api_key", "self_service_secret"})
# Secrets that hold several values at once (a rotation), each judged alone.
_LISTS = frozenset({"webhook_secrets", "internal_api_key", "self_service_previous_secrets"})


def split_secrets(value: SecretStr | None) -> tuple[str, ...]:
    """The values of a comma-separated secret, in order, blanks left out."""
    if value is None:
        return ()
    return tuple(part.strip() for part in value.get_secret_value().split(",") if part.strip())


def _secret_parts(name: str, value: str | None) -> list[str | None]:
    if value is None or name not in _LISTS:
        return [value]
    return [part.strip() for part in value.split(",")] or [value]


class CommonSettings(BaseSettings):
    """Configuration every service and the worker understand."""

    # pydantic's error text quotes the input, which is every secret of the environment: a
    # refusal (or a traceback a supervisor logs) names the variable and the reason, not values.
    model_config = SettingsConfigDict(
        env_prefix="RINGBACK_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Environment = "development"
    database_url: str | None = None
    # A service may keep its schema in a database of its own; unset, it uses `database_url`.
    intake_database_url: str | None = None
    callback_database_url: str | None = None
    history_database_url: str | None = None
    # `pgbouncer`: `database_url` is a PgBouncer in transaction pooling, so no connection reuses
    # a server-side prepared statement, and what needs one server session throughout (LISTEN,
    # session advisory locks, migrations) goes to `database_direct_url` instead (docs/scaling.md).
    db_pooler: Literal["pgbouncer"] | None = None
    # PostgreSQL itself, for those session connections; unset: the service's database URL.
    database_direct_url: str | None = None
    # `redis://`, `rediss://`, `unix://`, or Sentinel's `redis+sentinel://h:26379,h2:26379/mymaster/0`.
    redis_url: str | None = None

    intake_port: int = 8001
    callback_port: int = 8002
    history_port: int = 8003
    intake_url: str | None = None
    callback_url: str | None = None
    history_url: str | None = None
    public_base_url: str | None = None

    # Comma-separated: every key listed is accepted and the first is the one this process
    # sends, so a key is rotated while services keep calling each other (docs/operations.md).
    internal_api_key: SecretStr | None = None
    self_service_secret: SecretStr | None = None
    # Secrets that signed links customers still hold: accepted, never signed with, so a new
    # self-service secret does not break links already sent (remove them once those expired).
    self_service_previous_secrets: SecretStr | None = None

    # Signs `dial.requested` to the PBX (callback) and checks its reports (intake), DESIGN §10;
    # a secret of its own, apart from the inbound webhooks', so neither can forge the other.
    dialer_webhook_secret: SecretStr | None = None
    # The voice of what the phone system says to agents: the whisper, "not connected".
    dial_whisper_language: str = Field(default="en-GB", pattern=r"^[a-z]{2}-[A-Z]{2}$")

    site_timezone: str = "Europe/Helsinki"
    default_region: str = "FI"
    default_language: Language = "fi"
    # Destination countries we send SMS to at all (against SMS-pumping fraud): intake tells
    # callback which contacts may get one, callback checks again before it sends.
    sms_allowed_regions: Annotated[frozenset[str], NoDecode] = frozenset({"FI", "SE", "EE"})
    # Countries whose numbers agents dial through the phone system (§10), against toll fraud.
    dial_allowed_regions: Annotated[frozenset[str], NoDecode] = frozenset({"FI", "SE", "EE"})

    # `/docs` and `/openapi.json`; unset: served outside production, not in it (intake faces
    # the internet, and its API description is no business of a stranger's).
    public_docs: bool | None = None

    log_level: str = "INFO"
    # Unset: readable lines at a terminal, JSON anywhere else (`shared.logging.wants_json`).
    log_json: bool | None = None
    body_limit_bytes: int = Field(default=64 * 1024, ge=1024)
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    db_pool_size: int = Field(default=10, ge=1)
    # No overflow by default: SQLAlchemy closes an overflow connection when it comes back to
    # a full pool, so under steady load every request opened one (a PostgreSQL fork and a TLS
    # probe). Intake went from 361 to 672 webhooks/s with a fixed pool of 10 (bench/RESULTS.md).
    db_max_overflow: int = Field(default=0, ge=0)
    db_command_timeout_seconds: float = Field(default=30.0, gt=0)
    # arq's queue name; tests give each run its own so parallel runs never share work.
    queue_name: str = "ringback:callback"
    # OpenTelemetry traces: exported over OTLP/HTTP to this collector base URL; unset, none
    # are (the standard OTEL_EXPORTER_OTLP_ENDPOINT is honoured too, see shared/telemetry.py).
    otel_exporter_otlp_endpoint: str | None = Field(default=None, pattern=r"^(https?://.*)?$")
    # Share of new traces kept; a trace that arrives sampled (or not) keeps its caller's choice.
    otel_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("sms_allowed_regions", "dial_allowed_regions", mode="before")
    @classmethod
    def _split_regions(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(v).strip().upper() for v in value if str(v).strip())
        return value

    @field_validator("redis_url")
    @classmethod
    def _readable_redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value)

    @field_validator("self_service_previous_secrets", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # A deployment that has finished a rotation may leave the variable set but empty.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _fill_peer_urls(self) -> CommonSettings:
        # Frozen model: fill derived defaults through object.__setattr__ once, at validation.
        for name, port in (
            ("intake_url", self.intake_port),
            ("callback_url", self.callback_port),
            ("history_url", self.history_port),
        ):
            if getattr(self, name) is None:
                object.__setattr__(self, name, f"http://127.0.0.1:{port}")
        if self.public_base_url is None:
            object.__setattr__(self, "public_base_url", self.intake_url)
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> CommonSettings:
        if self.environment != "production":
            return self
        problems: list[str] = []
        # Every secret of every process's settings (this class's subclasses add theirs), so a
        # new secret field is covered without being listed here.
        for name in type(self).model_fields:
            value, signing = getattr(self, name), name in SIGNING_KEYS
            if not isinstance(value, SecretStr) and name not in _REQUIRED_SIGNING_KEYS:
                continue  # not a secret, or an optional one left unset: its feature is off
            plain = value.get_secret_value() if isinstance(value, SecretStr) else None
            for part in _secret_parts(name, plain):
                if why := refusal(f"RINGBACK_{name.upper()}", part, signing=signing):
                    problems.append(why)
                    break
        for name in ("database_url", "database_direct_url", "redis_url"):
            if why := url_password_refusal(f"RINGBACK_{name.upper()}", getattr(self, name)):
                problems.append(why)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def internal_api_keys(self) -> tuple[str, ...]:
        """Every internal key this process accepts; the first is the one it sends."""
        return split_secrets(self.internal_api_key)

    def self_service_previous_secret_list(self) -> tuple[str, ...]:
        """Secrets of links sent before the last rotation: checked, never signed with."""
        return split_secrets(self.self_service_previous_secrets)

    def docs_served(self) -> bool:
        """Whether `/docs` and `/openapi.json` are served: `public_docs`, else not in production."""
        if self.public_docs is not None:
            return self.public_docs
        return self.environment != "production"

    def metrics_served(self) -> bool:
        """Whether the API port serves `/metrics`; a service facing the internet says no."""
        return True

    def require_database_url(self) -> str:
        """The configured database URL, or a clear error naming the variable."""
        if not self.database_url:
            raise RuntimeError(
                "RINGBACK_DATABASE_URL is not set (`make run` sets it, or starts an embedded one)"
            )
        return self.database_url

    def database_url_for(self, service: str | None) -> str:
        """The database a service's schema lives in (its own URL, else the shared one)."""
        own = getattr(self, f"{service}_database_url", None) if service else None
        return own or self.require_database_url()

    def direct_database_url_for(self, service: str | None) -> str:
        """Where `service` opens a connection that must stay one server session (LISTEN, locks).

        `database_direct_url` when set, unless the service has a database of its own.
        """
        if self.database_direct_url and not (
            service and getattr(self, f"{service}_database_url", None)
        ):
            return self.database_direct_url
        return self.database_url_for(service)

    def all_database_urls(self) -> dict[str, str]:
        """Each component with the database it lives in; API keys live beside every service."""
        return {svc: self.database_url_for(svc) for svc in ("intake", "callback", "history")}

    def require_redis_url(self) -> str:
        """The configured Redis URL, or a clear error naming the variable."""
        if not self.redis_url:
            raise RuntimeError(
                "RINGBACK_REDIS_URL is not set (`make run` sets it, or starts an embedded one)"
            )
        return self.redis_url

    def peer_url(self, name: str) -> str:
        """Base URL of a peer service (`intake`, `callback`, `history`)."""
        value = getattr(self, f"{name}_url")
        assert isinstance(value, str)
        return value.rstrip("/")
