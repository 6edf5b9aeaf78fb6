"""Self-service links: a signed, expiring token that names one callback and grants nothing else."""

from __future__ import annotations

from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from services.callback.settings import CallbackSettings

TOKEN_SALT = "ringback.callback.self-service"
# Development only: production refuses to start without RINGBACK_SELF_SERVICE_SECRET.
_DEVELOPMENT_SECRET = "ringback-development-self-service-secret"


def _serializer(settings: CallbackSettings) -> URLSafeTimedSerializer:
    secret = settings.self_service_secret
    if secret is not None and secret.get_secret_value():
        key = secret.get_secret_value()
    elif settings.environment == "production":
        raise RuntimeError("RINGBACK_SELF_SERVICE_SECRET must be set in production")
    else:
        key = _DEVELOPMENT_SECRET
    # itsdangerous signs with the last key and accepts a signature by any, so links sent
    # before a rotation keep working, each until its own age runs out (`check_token`).
    keys = [*settings.self_service_previous_secret_list(), key]
    return URLSafeTimedSerializer(keys, salt=TOKEN_SALT)


def create_token(settings: CallbackSettings, callback_id: str) -> str:
    """A token for the customer of `callback_id`, signed with the current secret."""
    return _serializer(settings).dumps({"cb": callback_id})


def verify_token(settings: CallbackSettings, token: str) -> str | None:
    """The callback id a token was made for, or None if forged, altered or expired."""
    state, callback_id = check_token(settings, token)
    return callback_id if state == "ok" else None


def check_token(
    settings: CallbackSettings, token: str
) -> tuple[Literal["ok", "expired", "invalid"], str | None]:
    """("ok", callback id), ("expired", None) for a genuine but old link, or ("invalid", None)."""
    if len(token) > 512:
        return "invalid", None
    serializer = _serializer(settings)
    try:
        data = serializer.loads(token, max_age=settings.self_service_max_age_hours * 3600)
    except SignatureExpired:
        return "expired", None
    except BadSignature:
        return "invalid", None
    if not isinstance(data, dict) or not isinstance(data.get("cb"), str):
        return "invalid", None
    callback_id: str = data["cb"]
    return "ok", callback_id


def self_service_link(settings: CallbackSettings, callback_id: str) -> str:
    """`{public_base_url}/v1/self/{token}`."""
    base = (settings.public_base_url or "").rstrip("/")
    return f"{base}/v1/self/{create_token(settings, callback_id)}"
