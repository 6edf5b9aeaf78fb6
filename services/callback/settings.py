"""Callback's configuration: `RINGBACK_*` variables on top of the common ones (DESIGN §8)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import CommonSettings
from shared.vocabulary import Dialer


class CallbackSettings(CommonSettings):
    """Settings of the callback API and its arq worker."""

    # SMS: the development file sink by default, so `make run` needs no provider account.
    sms_provider: Literal["file", "http", "twilio"] = "file"
    sms_http_url: str | None = None
    sms_twilio_base_url: str = "https://api.twilio.com"
    sms_twilio_account_sid: str | None = None
    sms_twilio_auth_token: SecretStr | None = None
    sms_twilio_from: str | None = None
    # Alphanumeric sender id or number passed to the generic gateway as `sender`.
    sms_sender: str | None = None

    email_provider: Literal["file", "smtp"] = "file"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    email_from: str = "ringback <noreply@localhost>"

    # Where the file sinks write one readable file per message.
    sink_dir: Path = Path(".data/outbox")

    # The promise made to an ASAP callback: called within this many minutes of first contact.
    sla_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    # A merged contact inside this window gets no second confirmation.
    confirmation_cooldown_minutes: int = Field(default=60, ge=0)
    # How long a self-service link stays valid.
    self_service_max_age_hours: int = Field(default=7 * 24, ge=1)

    # Ceilings on what anyone who knows a number can make us send (docs/reliability.md §3). A
    # rebook through the self-service link sends an SMS, so rebooks are capped per callback and
    # per number; cancelling is always allowed (it ends the callback, once).
    self_service_rebooks_per_callback_per_day: int = Field(default=3, ge=0, le=100)
    self_service_rebooks_per_number_per_day: int = Field(default=6, ge=0, le=100)
    # At most one "rebooked"/"cancelled" SMS per callback in this many minutes.
    notice_sms_cooldown_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    # Every kind of message counts (confirmation, reminder, tried, rebooked, cancelled, ...),
    # over the last 24 hours: an ordinary callback sends 3-6 SMS in all.
    sms_per_number_per_day: int = Field(default=10, ge=1, le=1000)
    email_per_address_per_day: int = Field(default=10, ge=1, le=1000)
    # `POST /v1/callbacks` and `POST /v1/acknowledgements` per API key per hour (both make us
    # send); the internal key, which the intake relay forwards every contact with, is exempt.
    sends_per_api_key_per_hour: int = Field(default=300, ge=1)
    # A full batch of 100 creates from intake is about 60 KB; a message of 2,000 characters in
    # each could make one ten times that.
    callback_batch_body_limit_bytes: int = Field(
        default=1024 * 1024,
        ge=64 * 1024,
        description="body limit of `POST /v1/callbacks:batch` (others: "
        "`RINGBACK_BODY_LIMIT_BYTES`); a batch over it is sent again item by item",
    )

    # Sends per notification before it is dead (an operator can replay it).
    notification_max_tries: int = Field(default=5, ge=1, le=50)
    notification_backoff_base_seconds: float = Field(default=30.0, gt=0)
    notification_backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    # Upper bound of one send job; the lease below must outlast it.
    notification_timeout_seconds: float = Field(default=30.0, gt=0)
    # A row in `sending` longer than this is taken to be from a worker that died mid-send.
    notification_lease_seconds: float = Field(default=120.0, gt=0)

    # The agent queue: a claim is a lease that returns the callback when it runs out.
    claim_lease_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Retry policy after no_answer/busy/voicemail: tries in all, and the waits between them
    # (the last wait repeats if there are more tries than waits), moved into business hours.
    retry_max_tries: int = Field(default=3, ge=1, le=20)
    retry_delays_minutes: Annotated[tuple[int, ...], NoDecode] = (15, 120)
    # A callback whose language no available agent of its queue speaks goes to anyone in the
    # queue once it has been due this long (a queue may set its own, §9).
    language_wait_minutes: int = Field(default=15, ge=0, le=7 * 24 * 60)
    # Until when only the owner may claim a callback they booked for themself: this long after
    # it falls due, unless `owner_until` says otherwise.
    owner_minutes: int = Field(default=30, ge=0, le=7 * 24 * 60)
    # A reminder goes this long before a booked slot starts (0: no reminders).
    reminder_minutes_before: int = Field(default=15, ge=0, le=24 * 60)
    # An answered inbound call from the number completes its open callback (`reached_inbound`).
    complete_on_inbound_answer: bool = True
    # `GET /v1/slots` answers for at most this many days at once.
    slots_max_range_days: int = Field(default=31, ge=1, le=92)
    # The worker serves its Prometheus metrics (SLA breaches, ...) here; unset: not served.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Dialing through the phone system (DESIGN §10). `none`: the console shows a `tel:` link.
    dialer: Dialer = Dialer.NONE
    dialer_twilio_base_url: str = "https://api.twilio.com"
    dialer_twilio_account_sid: str | None = None
    dialer_twilio_auth_token: SecretStr | None = None
    dialer_webhook_url: str | None = None
    # Seconds the agent's phone and then the customer's rings (Twilio allows at most 20 here
    # without the call reaching the agent's voicemail first, which the whisper guards anyway).
    dial_ring_seconds: int = Field(default=20, ge=5, le=20)
    customer_ring_seconds: int = Field(default=30, ge=5, le=120)
    # What the agent hears before "press 1": who is about to be called, in their words.
    dial_whisper: str = Field(
        default="A ringback callback. Press 1 to call the customer.", max_length=300
    )
    # A proposed outcome from the line becomes final by itself this long after hang-up.
    wrap_up_seconds: int = Field(default=120, ge=0, le=3600)
    # A dial the phone system has said nothing of for this long is `unknown` (a lost report).
    dial_stale_minutes: int = Field(default=60, ge=1, le=24 * 60)

    # Voicemail (§11): Twilio recordings are played and deleted through this account's
    # Recordings API. Our credentials go only to this origin, whatever URL a webhook names.
    voicemail_twilio_base_url: str = Field(
        default="https://api.twilio.com",
        description="the Twilio API origin voicemail recordings are fetched from and deleted at",
    )
    voicemail_twilio_account_sid: str | None = Field(
        default=None,
        description="Twilio account SID for voicemail recordings (HTTP basic auth user); unset: "
        "`RINGBACK_DIALER_TWILIO_ACCOUNT_SID`",
    )
    voicemail_twilio_auth_token: SecretStr | None = Field(
        default=None,
        description="its auth token; unset: `RINGBACK_DIALER_TWILIO_AUTH_TOKEN`",
    )
    voicemail_fetch_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="seconds to wait for the provider when playing or deleting a recording",
    )
    # Erasure's own delete is the first try; the worker tries again with backoff. With these
    # defaults the last try comes 10-20 hours after the erasure.
    voicemail_delete_max_tries: int = Field(
        default=12,
        ge=2,
        le=50,
        description="tries in all to delete an erased person's recording at the provider "
        "(erasure's own included) before it is given up and logged for an operator",
    )
    voicemail_delete_backoff_base_seconds: float = Field(
        default=60.0,
        gt=0,
        description="wait after the first failed delete of a recording; doubles with each try",
    )
    voicemail_delete_backoff_cap_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="the longest wait between two tries to delete a recording",
    )

    # Promises at risk (DESIGN §14): offer the customer a later time, once, by SMS with the
    # self-service link, before a promise the at-risk job expects to break is broken.
    at_risk_offer: bool = False

    # Satisfaction surveys (§13) go from this number, so replies come back to us; an
    # alphanumeric sender cannot be replied to and is refused. Unset: SMS surveys are not sent
    # (customers with an email get theirs by email).
    survey_from: str | None = Field(
        default=None,
        description="the number (E.164) survey SMS are sent from, one that receives replies "
        "(Twilio Messaging's or the gateway's inbound webhook points at intake); unset: surveys "
        "go by email only",
    )
    # Local `HH:MM-HH:MM` in which no reminder, "we tried", survey or at-risk offer SMS goes
    # out (it waits for the end); a queue's `sms_quiet_hours` overrides it. `off`: none.
    sms_quiet_hours: str = Field(
        default="21:00-08:00",
        description="site default SMS quiet hours `HH:MM-HH:MM` in the queue's zone (a queue's "
        '`sms_quiet_hours` overrides it); reminders, "we tried", surveys and at-risk offers '
        "wait for the end, confirmations never wait; `off`: none",
    )

    # Upper bound of the other jobs (booking, sweeper, expiry). arq re-runs the job of a worker
    # that died this long (+10 s) after it started, the longest of all job timeouts.
    job_timeout_seconds: float = Field(default=30.0, gt=0)

    # Sends wait on the provider (100-500 ms for a real one), so one worker runs many at once.
    # A job holds a database connection only for its claim and its record (a statement or
    # two each, never during the send), so the pool (RINGBACK_DB_POOL_SIZE +
    # RINGBACK_DB_MAX_OVERFLOW, 20 by default) serves 50-100 jobs; jobs beyond that wait.
    worker_max_jobs: int = Field(default=50, ge=1)
    # How often an idle worker asks Redis for jobs; it takes at most `worker_max_jobs` per ask,
    # so this also caps throughput (arq's own default of 0.5 s allows ~20 sends/s).
    worker_poll_delay_seconds: float = Field(default=0.1, gt=0, le=5)
    # SIGTERM: stop taking jobs, let running ones finish this long, then hand them back.
    worker_shutdown_grace_seconds: int = Field(default=20, ge=0)
    # The worker forwards callback's outbox (history events); off when a separate relay runs.
    outbox_relay: bool = True
    # Browser origins (`scheme://host[:port]`, comma-separated) whose pages may call this API
    # with a key: the agent console is served by history, another origin. Unset: history's
    # origin (RINGBACK_HISTORY_URL), so `make run` works; empty: no cross-origin calls at all.
    cors_allow_origins: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description="browser origins (`scheme://host[:port]`, comma-separated) whose pages may "
        "call callback's API (CORS), such as the agent console's; unset: the origin of "
        "`RINGBACK_HISTORY_URL`; empty: none",
    )

    @field_validator("retry_delays_minutes", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("retry_delays_minutes")
    @classmethod
    def _delays_bounded(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or len(value) > 20 or any(not 1 <= v <= 7 * 24 * 60 for v in value):
            raise ValueError("give 1-20 waits of 1 minute to 7 days, comma-separated")
        return value

    @field_validator("survey_from")
    @classmethod
    def _survey_number(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
            raise ValueError(
                "RINGBACK_SURVEY_FROM must be a phone number in E.164 form (+358401234567): "
                "customers reply to it, and an alphanumeric sender cannot receive replies"
            )
        return value

    @field_validator("sms_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "off", "none"):
            return "off"
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("write quiet hours as HH:MM-HH:MM (21:00-08:00), or `off`")
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(_origin(str(v)) for v in value if str(v).strip())
        return value

    @model_validator(mode="after")
    def _default_origins(self) -> CallbackSettings:
        if self.cors_allow_origins is None:
            history = urlsplit(self.peer_url("history"))
            origin = f"{history.scheme}://{history.netloc}".lower()
            object.__setattr__(self, "cors_allow_origins", (origin,))
        return self

    @model_validator(mode="after")
    def _providers_configured(self) -> CallbackSettings:
        missing: list[str] = []
        if self.sms_provider == "http" and not self.sms_http_url:
            missing.append("RINGBACK_SMS_HTTP_URL")
        if self.sms_provider == "twilio":
            for name in ("sms_twilio_account_sid", "sms_twilio_auth_token", "sms_twilio_from"):
                if not getattr(self, name):
                    missing.append(f"RINGBACK_{name.upper()}")
        if self.dialer == "twilio":
            for name in ("dialer_twilio_account_sid", "dialer_twilio_auth_token"):
                if not getattr(self, name):
                    missing.append(f"RINGBACK_{name.upper()}")
        if self.dialer == "webhook":
            if not self.dialer_webhook_url:
                missing.append("RINGBACK_DIALER_WEBHOOK_URL")
            if self.dialer_webhook_secret is None:
                missing.append("RINGBACK_DIALER_WEBHOOK_SECRET")
        if self.email_provider == "smtp" and not self.smtp_host:
            missing.append("RINGBACK_SMTP_HOST")
        if missing:
            raise ValueError(f"the chosen providers need {', '.join(missing)}")
        if self.notification_lease_seconds <= self.notification_timeout_seconds:
            raise ValueError(
                "RINGBACK_NOTIFICATION_LEASE_SECONDS must exceed "
                "RINGBACK_NOTIFICATION_TIMEOUT_SECONDS"
            )
        return self


def _origin(url: str) -> str:
    """`scheme://host[:port]` of `url` (what a browser sends as `Origin`), or a clear error."""
    url = url.strip()
    if url == "*":
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an origin (scheme://host[:port]): {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"an origin has no path, query or fragment: {url!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()
