"""docs/configuration.md, generated from the settings classes: every `RINGBACK_*` variable,
its default and what it means. Regenerate with `python -m services.cli.config_reference`.

The meanings live here rather than in the settings classes so the services' files stay as they
are; a field without a meaning here makes `render_markdown` fail (and the doc test with it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from shared.settings import CommonSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

# (settings class, who reads it), in the order the document lists them.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("shared.settings:CommonSettings", "every process"),
    ("services.intake.settings:IntakeSettings", "intake and its relay"),
    ("services.callback.settings:CallbackSettings", "callback and its worker"),
    ("services.history.settings:HistorySettings", "history"),
)

MEANINGS: dict[str, str] = {
    # --- common
    "environment": "production refuses missing or placeholder secrets",
    "database_url": "PostgreSQL, `postgresql://user:pass@host:port/db`; `make run` starts an "
    "embedded one under `.data/` when unset",
    "intake_database_url": "a database of intake's own (its migrations and API keys follow); "
    "unset: `RINGBACK_DATABASE_URL`",
    "callback_database_url": "a database of callback's own; unset: `RINGBACK_DATABASE_URL`",
    "history_database_url": "a database of history's own; unset: `RINGBACK_DATABASE_URL`",
    "db_pooler": "`pgbouncer`: the database URLs are a PgBouncer in transaction pooling "
    "(no prepared statement reused); unset: PostgreSQL itself",
    "database_direct_url": "PostgreSQL itself, past any pooler, for LISTEN, session locks and "
    "migrations; unset: the service's database URL",
    "redis_url": "Redis for arq's queue and the limits (`redis://host:port/db`, "
    "`unix:///path?db=0`, or Sentinel's `redis+sentinel://host:26379,host2:26379/master/db`); "
    "`make run` starts an embedded one when unset",
    "intake_port": "intake's listen port (`ringback serve intake`)",
    "callback_port": "callback's listen port",
    "history_port": "history's listen port",
    "intake_url": "where peers and the CLI find intake; unset: `http://127.0.0.1:<intake port>`",
    "callback_url": "where peers and the CLI find callback; unset: "
    "`http://127.0.0.1:<callback port>`",
    "history_url": "where peers find history; unset: `http://127.0.0.1:<history port>`",
    "public_base_url": "intake's URL as the outside world sees it (Twilio signatures, "
    "self-service links); unset: `RINGBACK_INTAKE_URL`",
    "internal_api_key": "the key (scope `internal`) services call each other with; "
    "comma-separated, all accepted and the first sent (rotation); `make run` generates one",
    "self_service_secret": "signs the customers' self-service links; on a change, list the old "
    "one in `RINGBACK_SELF_SERVICE_PREVIOUS_SECRETS` or links already sent stop working; "
    "`make run` generates one",
    "self_service_previous_secrets": "earlier self-service secrets, comma-separated: links they "
    "signed open until they expire, new links are signed with the current one (rotation)",
    "site_timezone": "the site's IANA time zone (times in messages and in the agent console, "
    "the default plan zone)",
    "default_region": "region for numbers written without a country code (`040 ...` is Finnish)",
    "default_language": "language of messages when the customer's is not known",
    "public_docs": (
        "serve `/docs` and `/openapi.json` (Swagger UI from the installed package, no CDN); "
        "unset: yes outside production, no in production"
    ),
    "log_level": "log level (`DEBUG`, `INFO`, `WARNING`, ...)",
    "log_json": (
        "JSON log lines (`true`) or readable ones (`false`); unset: readable at a terminal, "
        "JSON elsewhere"
    ),
    "body_limit_bytes": "request bodies over this get `413`",
    "http_timeout_seconds": "timeout of outgoing HTTP requests (peers, gateways)",
    "api_key_cache_seconds": "how long a key check is cached: a revoked key stops working "
    "within this",
    "db_pool_size": "database connections kept per process",
    "db_max_overflow": "extra connections a process may open under load; each is closed "
    "again on return to a full pool, so under steady load they are reopened per request",
    "db_command_timeout_seconds": "upper bound of one database statement",
    "queue_name": "arq's queue name (tests give each run its own)",
    "otel_exporter_otlp_endpoint": "OpenTelemetry collector (OTLP/HTTP base URL) to send "
    "traces to; unset: the standard `OTEL_EXPORTER_OTLP_ENDPOINT`, else no traces",
    "otel_sample_ratio": "share of new traces kept (`0`-`1`); a caller's sampled trace is "
    "always continued",
    "dialer_webhook_secret": "`whsec_...` secret that signs `dial.requested` (callback) and "
    "checks the PBX's reports to `/v1/webhooks/dialer` (intake); needed with `webhook`",
    "dial_allowed_regions": "countries whose numbers agents may dial through the phone system "
    "(comma-separated ISO codes), against toll fraud",
    "sms_allowed_regions": "countries we send SMS to at all (against SMS pumping), "
    "comma-separated; others get no SMS",
    # --- intake
    "webhook_secrets": "Standard Webhooks secrets (`whsec_...`), comma-separated, all accepted "
    "(rotation); unset: generic webhooks refused (`403`)",
    "webhook_tolerance_seconds": "accepted clock skew of a webhook's timestamp",
    "twilio_auth_token": "Twilio's signature key; unset: Twilio webhooks refused",
    "twilio_hold_music_url": "audio Twilio plays to callers waiting in the queue between "
    "callback offers (`/v1/twiml/wait`); unset: silence",
    "cti_token": "path token of the generic CTI webhook; unset: CTI refused",
    "relay_batch_size": "outbox rows the relay forwards per round",
    "relay_poll_seconds": "how often the relay looks for rows when no notification wakes it",
    "relay_metrics_port": "the relay serves `/metrics` on this port; unset: not served",
    "relay_metrics_host": "address of the relay's metrics server",
    "rejected_body_limit_bytes": "bytes kept of each rejected payload's body, for operators",
    "rejected_retention_days": "days rejected payloads are kept",
    "call_leg_retention_days": "days call legs (needed only while a call goes on) are kept",
    "rate_limit_window_seconds": "window of the contact-request limits below",
    "rate_limit_per_phone": "contact requests per number per window",
    "rate_limit_per_ip": "contact requests per client address per window",
    "rate_limit_per_api_key": "contact requests per API key per window",
    "trusted_proxies": "reverse proxies whose `X-Forwarded-For` names the client, comma-separated",
    # --- callback
    "sms_provider": "how SMS go out: `file` (development sink), `http` (generic JSON gateway) "
    "or `twilio`",
    "sms_http_url": "the generic JSON SMS gateway's endpoint (needed with `http`)",
    "sms_twilio_base_url": "base URL of the Twilio-compatible Messages API",
    "sms_twilio_account_sid": "Twilio account SID (needed with `twilio`)",
    "sms_twilio_auth_token": "Twilio auth token (needed with `twilio`)",
    "sms_twilio_from": "Twilio sender number (needed with `twilio`)",
    "sms_sender": "sender id or number passed to the generic gateway as `sender`",
    "email_provider": "how email goes out: `file` (development sink) or `smtp`",
    "smtp_host": "SMTP server (needed with `smtp`)",
    "smtp_port": "SMTP port",
    "smtp_username": "SMTP user, if the server wants one",
    "smtp_password": "SMTP password",
    "smtp_starttls": "upgrade the SMTP connection with STARTTLS",
    "smtp_timeout_seconds": "SMTP timeout",
    "email_from": "sender of confirmation emails",
    "sink_dir": "where the `file` providers write one readable file per message",
    "sla_minutes": "an ASAP callback's promise: called within this many minutes of first contact",
    "confirmation_cooldown_minutes": "a merged contact within this gets no second confirmation",
    "self_service_max_age_hours": "how long a self-service link stays valid",
    "self_service_rebooks_per_callback_per_day": "rebooks one self-service link allows in 24 h "
    "(each sends a notice); then 429 and the page asks the customer to call",
    "self_service_rebooks_per_number_per_day": "rebooks through self-service links for one "
    "number in 24 h, across its callbacks",
    "notice_sms_cooldown_minutes": "at most one rebooked/cancelled SMS per callback in this "
    "time (the notice still goes by email); 0: no cooldown",
    "sms_per_number_per_day": "SMS of every kind to one number in 24 h; past it a message is "
    "refused and recorded (`ringback_refusals_total`)",
    "email_per_address_per_day": "emails of every kind to one address in 24 h; past it a "
    "message is refused and recorded",
    "sends_per_api_key_per_hour": "`POST /v1/callbacks` and `/v1/acknowledgements` per API "
    "key per hour (the internal key is exempt)",
    "language_wait_minutes": "a callback in a language no agent of its queue speaks goes to "
    "anyone in the queue once due this long (a queue may set its own)",
    "owner_minutes": "a callback an agent keeps for themself is theirs alone until this long "
    "after it falls due (unless `owner_until` says otherwise)",
    "notification_max_tries": "sends per notification before it is dead (an operator can retry it)",
    "notification_backoff_base_seconds": "first wait between sends of a notification (doubles, "
    "with jitter)",
    "notification_backoff_cap_seconds": "longest wait between sends",
    "notification_timeout_seconds": "upper bound of one send",
    "notification_lease_seconds": "a notification `sending` longer than this is taken over "
    "(must exceed the send timeout)",
    "claim_lease_minutes": "an agent's claim on a callback; when it runs out the callback goes "
    "back to the queue",
    "retry_max_tries": "tries in all after `no_answer`/`busy`/`voicemail` before the callback "
    "fails",
    "retry_delays_minutes": "waits between tries, comma-separated (the last repeats), moved "
    "into business hours",
    "reminder_minutes_before": "a reminder goes this long before a booked slot (0: none)",
    "complete_on_inbound_answer": "an answered inbound call from the number completes its open "
    "callback",
    "slots_max_range_days": "`GET /v1/slots` answers for at most this many days at once",
    "worker_metrics_port": "the worker serves `/metrics` on this port; unset: not served",
    "at_risk_offer": "offer a customer whose promise is at risk a later time, once, by SMS "
    "with the self-service link (outside quiet hours, within the SMS ceiling)",
    "dialer": "what places calls when an agent presses Call: `none` (a `tel:` link), "
    "`twilio` (agent first, through Twilio's Calls API) or `webhook` (a signed "
    "`dial.requested` to your PBX); docs/api.md, dialing",
    "dialer_twilio_base_url": "Twilio's API base (a test server in tests)",
    "dialer_twilio_account_sid": "Twilio account SID that places the calls (needed with `twilio`)",
    "dialer_twilio_auth_token": "its auth token (needed with `twilio`); intake checks Twilio's "
    "callbacks with `RINGBACK_TWILIO_AUTH_TOKEN`, the same account's token",
    "dialer_webhook_url": "where `dial.requested` goes (needed with `webhook`)",
    "dial_ring_seconds": "seconds the agent's phone rings (Twilio `Timeout`, at most 20)",
    "customer_ring_seconds": "seconds the customer's phone rings before `no_answer`",
    "dial_whisper": "what the agent hears before pressing 1 to call the customer",
    "dial_whisper_language": "the whisper's voice language (`en-GB`, `fi-FI`, `sv-SE`, ...)",
    "wrap_up_seconds": "a proposed outcome from the line becomes final by itself this long "
    "after the call ended, unless the agent confirms or corrects it first",
    "dial_stale_minutes": "a dial the phone system has said nothing of for this long is shown "
    "as `unknown`, and the agent may dial again",
    "job_timeout_seconds": "upper bound of the worker's other jobs (booking, sweeper, expiry)",
    "worker_max_jobs": "jobs one worker runs at once",
    "worker_poll_delay_seconds": "how often an idle worker asks Redis for jobs",
    "worker_shutdown_grace_seconds": "on SIGTERM, how long running jobs may finish",
    "outbox_relay": "the worker forwards callback's outbox to history (off when a separate "
    "relay does)",
    # --- history
    "history_retention_days": "events older than this are purged",
    "history_purge_enabled": "run the retention purge inside history",
    "history_purge_interval_seconds": "how often the purge runs",
    "history_purge_batch_size": "events per delete statement of the purge",
    "history_partitions_enabled": "run the task creating monthly event partitions ahead",
    "history_partitions_interval_seconds": "how often the partition task runs",
    "history_partitions_months_ahead": "months of event partitions created past the current one",
    "history_partitions_lock_timeout_ms": "longest wait for the events table lock when "
    "creating or detaching a month partition",
    "history_batch_body_limit_bytes": "body limit of `POST /v1/events:batch` (others: "
    "`RINGBACK_BODY_LIMIT_BYTES`)",
    "history_stream_heartbeat_seconds": "a comment line this often keeps idle live streams open "
    "through proxies",
    "history_stream_queue_size": "wake-ups one live stream may have waiting before it catches "
    "up from the database",
    "history_stream_poll_seconds": "without a LISTEN connection, how often streams look for events",
    "history_erasure_relay_enabled": "forward history's erasures to callback and intake from "
    "inside history",
    "history_relay_poll_seconds": "how often that erasure relay (and the webhook relay) "
    "looks for rows when no NOTIFY woke it",
    "history_webhook_relay_enabled": "send webhooks out to subscribers (DESIGN §12) from "
    "inside history",
    "history_webhook_per_endpoint": "webhook requests in flight to one endpoint at most, per "
    "history process",
    "history_webhook_max_in_flight": "webhook requests in flight to all endpoints at most, per "
    "history process",
    "history_webhook_timeout_seconds": "a webhook request not answered within this is cut off "
    "and retried later",
    "history_webhook_keep_days": "delivered and dead webhook deliveries (and the event data "
    "they hold) are deleted after this many days",
    "webhook_allow_private": "let webhook endpoints point at loopback and private addresses "
    "(development and tests only; refused in production)",
    "history_queue_zone_cache_seconds": "how long a queue's time zone, asked of callback for "
    "per-queue statistics, is kept (a failed look-up: at most 5 s)",
}


def _load(path: str) -> type[BaseSettings]:
    from importlib import import_module

    module, _, name = path.partition(":")
    cls = getattr(import_module(module), name)
    assert isinstance(cls, type)
    assert issubclass(cls, BaseSettings)
    return cls


def variable(name: str) -> str:
    return f"RINGBACK_{name.upper()}"


def own_fields(cls: type[BaseSettings]) -> Iterator[tuple[str, FieldInfo]]:
    """The fields `cls` adds to (or redefines over) `CommonSettings`; all of them for it."""
    for name, info in cls.model_fields.items():
        inherited = CommonSettings.model_fields.get(name)
        if cls is CommonSettings or inherited is None or inherited.default != info.default:
            yield name, info


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, frozenset | set):
        return f"`{','.join(sorted(value))}`"
    if isinstance(value, tuple | list):
        return f"`{','.join(str(v) for v in value)}`"
    if isinstance(value, Enum):
        value = value.value
    if value == "":
        return '`""`'
    return f"`{value}`"


def _allowed(info: FieldInfo) -> str:
    """Choices or bounds the setting accepts, as a short phrase."""
    choices = _literal_choices(info.annotation)
    if choices:
        return "one of " + ", ".join(f"`{c}`" for c in choices)
    low = high = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = f"{'≥' if isinstance(item, annotated_types.Ge) else '>'} {_num(item)}"
        if isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = f"{'≤' if isinstance(item, annotated_types.Le) else '<'} {_num(item)}"
    return ", ".join(part for part in (low, high) if part)


def _num(item: Any) -> str:
    for attribute in ("ge", "gt", "le", "lt"):
        if hasattr(item, attribute):
            return str(getattr(item, attribute))
    return ""


def _literal_choices(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(a) for a in get_args(annotation)]
    for arg in get_args(annotation):
        found = _literal_choices(arg)
        if found:
            return found
    return []


def render_markdown() -> str:
    """The whole of docs/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m services.cli.config_reference > docs/configuration.md`",
        "     from the settings classes; tests/docs/test_configuration_doc.py checks it. -->",
        "",
        "Every setting is an environment variable with the prefix `RINGBACK_`. Each process",
        "reads the common settings and those of its own service; a variable a process does not",
        "know is ignored, so one environment can serve them all. Values are validated at start:",
        "a process with a bad value refuses to start and names the variable. Comma-separated",
        "lists are written `a,b,c`; booleans as `true`/`false`. The short list of the most",
        "important variables is in the [README](../README.md#configuration).",
        "",
        "`make run` fills in what is unset for local development: an embedded PostgreSQL and",
        "Redis under `RINGBACK_DATA_DIR` (default `.data`), and generated secrets in",
        "`.data/dev-secrets.json`.",
    ]
    for path, readers in SECTIONS:
        cls = _load(path)
        name = path.rpartition(":")[2]
        lines += [
            "",
            f"## {name} ({readers})",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
        ]
        for field_name, info in own_fields(cls):
            meaning = MEANINGS.get(field_name) or info.description
            if not meaning:
                raise KeyError(
                    f"{name}.{field_name} has no meaning in services/cli/config_reference.py"
                )
            allowed = _allowed(info)
            if allowed:
                meaning = f"{meaning} ({allowed})"
            lines.append(f"| `{variable(field_name)}` | {_default(info)} | {meaning} |")
    lines += [
        "",
        "## Read by the command line and `make run` only",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        "| `RINGBACK_ADMIN_API_KEY` | — | the `admin` key `ringback inbound` and "
        "`ringback capacity` send (or `--api-key`) |",
        "| `RINGBACK_HOST` | `127.0.0.1` | listen address of `ringback serve` "
        "(the container image sets `0.0.0.0`) |",
        "| `RINGBACK_DATA_DIR` | `.data` | where `make run` keeps embedded data and generated "
        "development secrets |",
        "| `RINGBACK_DEMO_API_KEY` | made once, kept in `.data/dev-secrets.json` | the "
        "`history:read` key `ringback demo` reads the timeline with |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
