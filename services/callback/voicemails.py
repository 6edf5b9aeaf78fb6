"""Voicemail (§11): a message a caller left, kept on one row per call, called back like a
missed call, played to agents through us, and deleted at the provider when the person is
erased.

The audio never passes through our storage: `GET /v1/voicemails/{id}/audio` streams it from
the provider with our credentials, which go only to the configured provider origin (a
webhook cannot point them elsewhere). A delete the provider refuses at erasure is tried
again by the worker (`sweep_recording_deletes`) until it is done or given up.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from services.callback import creation, repository
from services.callback.jobs import NotificationQueue
from services.callback.models import Voicemail
from services.callback.schemas import VoicemailOut
from services.callback.settings import CallbackSettings
from services.callback.tasks import state_of
from shared.backoff import backoff_seconds
from shared.contracts import VoicemailIn
from shared.db import commit, utcnow
from shared.errors import NotFound, ProblemError, ServiceUnavailable
from shared.ids import new_id
from shared.phone import normalize
from shared.vocabulary import RecordingDeleteResult

log = structlog.get_logger("ringback.callback.voicemail")

# What Twilio serves a recording as when the URL names no format (docs: append .mp3 or .wav).
_TWILIO_FORMATS = (".mp3", ".wav")
_CHUNK = 64 * 1024


class VoicemailReceived(BaseModel):
    """The answer to `POST /v1/voicemails`: the voicemail, and the callback it belongs to."""

    id: str
    callback_id: str | None


def view(voicemail: Voicemail) -> VoicemailOut:
    playable = voicemail.recording_url is not None and voicemail.deleted_at is None
    return VoicemailOut(
        id=voicemail.id,
        occurred_at=voicemail.occurred_at,
        duration=voicemail.duration,
        transcript=voicemail.transcript,
        audio_url=f"/v1/voicemails/{voicemail.id}/audio" if playable else None,
    )


async def receive(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    data: VoicemailIn,
    queue: NotificationQueue,
    now: datetime | None = None,
) -> VoicemailReceived:
    """Record a voicemail (or more of it) on its call's row; ask for its callback once.

    Any number of deliveries for one call update one row: what is missing is filled in, a
    transcript replaces the one before it. The callback is asked for with the call's own
    request id, so a call that already made one joins it, and a repeat changes nothing.
    """
    now = now or utcnow()
    phone = normalize(data.phone, settings.default_region) if data.phone else None
    # The same order as a create (request, then number) after the call's own lock, so a
    # voicemail and a create or an erasure never wait on each other in a circle.
    await repository.lock(session, "voicemail_call", f"{data.provider}:{data.call_id}")
    if data.callback is not None:
        await repository.lock(session, "request", data.callback.request_id)
    if phone is not None:
        await repository.lock(session, "phone", phone)
    voicemail = await repository.voicemail_of_call(session, data.provider, data.call_id)
    if voicemail is None:
        voicemail = Voicemail(
            id=new_id(),
            provider=data.provider,
            call_id=data.call_id,
            phone=phone,
            occurred_at=data.occurred_at,
            created_at=now,
            updated_at=now,
        )
        session.add(voicemail)
    elif voicemail.erased_at is not None:
        # The person was erased meanwhile: a late piece of their message is not kept.
        return VoicemailReceived(id=voicemail.id, callback_id=None)
    if voicemail.recording_url is None and data.recording_url is not None:
        voicemail.recording_url = data.recording_url
        voicemail.recording_sid = data.recording_sid
        voicemail.duration = data.duration
    if data.transcript is not None:
        voicemail.transcript = data.transcript
    voicemail.phone = voicemail.phone or phone
    voicemail.updated_at = now
    await session.flush()
    if voicemail.callback_id is None and data.callback is not None:
        outcome = await creation.create_callback(
            session=session, settings=settings, data=data.callback, queue=queue, now=now
        )
        voicemail.callback_id = outcome.result.id
    if voicemail.transcript is not None and voicemail.callback_id is not None:
        callback = await repository.lock_callback(session, voicemail.callback_id)
        # The transcript is the callback's message unless the customer wrote one themself.
        if callback is not None and callback.message is None and callback.erased_at is None:
            callback.message = voicemail.transcript
            callback.updated_at = now
    await session.flush()
    log.info("callback.voicemail.received", voicemail_id=voicemail.id)
    return VoicemailReceived(id=voicemail.id, callback_id=voicemail.callback_id)


# ----------------------------------------------------------------------------- the provider


class BadGateway(ProblemError):
    status = 502
    title = "Bad Gateway"
    slug = "provider-failed"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a recording is, and how we prove to the provider that it is ours to fetch."""

    url: str
    auth: tuple[str, str] | None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _twilio_credentials(settings: CallbackSettings) -> tuple[str, str] | None:
    sid = settings.voicemail_twilio_account_sid or settings.dialer_twilio_account_sid
    token = settings.voicemail_twilio_auth_token or settings.dialer_twilio_auth_token
    if not sid or token is None or not token.get_secret_value():
        return None
    return sid, token.get_secret_value()


def source(settings: CallbackSettings, voicemail: Voicemail, *, audio: bool) -> Source:
    """The recording's URL (the audio file, or the Recording resource) and our credentials."""
    url = voicemail.recording_url
    if url is None or voicemail.deleted_at is not None:
        raise NotFound("This voicemail has no recording (any more).")
    if voicemail.provider != "twilio":
        # The PBX's own URL: fetched as given, with no credentials of ours.
        return Source(url=url, auth=None)
    if _origin(url) != _origin(settings.voicemail_twilio_base_url):
        raise ServiceUnavailable(
            "The recording is not at the configured Twilio API "
            "(RINGBACK_VOICEMAIL_TWILIO_BASE_URL); our credentials are not sent elsewhere."
        )
    credentials = _twilio_credentials(settings)
    if credentials is None:
        raise ServiceUnavailable(
            "Twilio recordings are not set up: RINGBACK_VOICEMAIL_TWILIO_ACCOUNT_SID and "
            "RINGBACK_VOICEMAIL_TWILIO_AUTH_TOKEN."
        )
    bare = url.split("?", 1)[0]
    for extension in (*_TWILIO_FORMATS, ".json"):
        if bare.endswith(extension):
            bare = bare[: -len(extension)]
    return Source(url=bare + ".mp3" if audio else bare, auth=credentials)


def _client(settings: CallbackSettings, where: Source) -> httpx.AsyncClient:
    # No redirects: our credentials go to the provider's origin and nowhere else.
    return httpx.AsyncClient(
        auth=where.auth,
        timeout=settings.voicemail_fetch_timeout_seconds,
        follow_redirects=False,
    )


async def stream_audio(settings: CallbackSettings, voicemail: Voicemail) -> StreamingResponse:
    """The recording's bytes as the provider sends them, passed on as they arrive."""
    where = source(settings, voicemail, audio=True)
    client = _client(settings, where)
    try:
        upstream = await client.send(client.build_request("GET", where.url), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        log.warning("callback.voicemail.fetch_failed", error=type(exc).__name__)
        raise BadGateway("The provider did not hand over the recording.") from None
    if upstream.status_code != 200:
        status = upstream.status_code
        await upstream.aclose()
        await client.aclose()
        log.warning("callback.voicemail.fetch_refused", status=status)
        if status == 404:
            raise NotFound("The provider no longer has this recording.")
        raise BadGateway(f"The provider answered {status} for the recording.")

    async def close() -> None:
        await upstream.aclose()
        await client.aclose()

    headers: dict[str, Any] = {"cache-control": "private, no-store"}
    if "content-length" in upstream.headers:
        headers["content-length"] = upstream.headers["content-length"]
    return StreamingResponse(
        upstream.aiter_raw(_CHUNK),
        media_type=upstream.headers.get("content-type", "audio/mpeg"),
        headers=headers,
        background=BackgroundTask(close),
    )


async def _delete_at_provider(settings: CallbackSettings, voicemail: Voicemail) -> bool:
    """DELETE the provider's Recording resource; True when it is gone (404: already)."""
    try:
        where = source(settings, voicemail, audio=False)
    except ProblemError as exc:
        log.warning("callback.voicemail.delete_impossible", reason=exc.detail)
        return False
    async with _client(settings, where) as client:
        try:
            answer = await client.delete(where.url)
        except httpx.HTTPError as exc:
            log.warning("callback.voicemail.delete_failed", error=type(exc).__name__)
            return False
    if answer.status_code in (200, 202, 204, 404):
        return True
    log.warning("callback.voicemail.delete_refused", status=answer.status_code)
    return False


def _settle(
    settings: CallbackSettings, voicemail: Voicemail, *, gone: bool, now: datetime
) -> RecordingDeleteResult:
    """After a try at the provider (counted in `delete_tries`): deleted, due again or given up."""
    if gone:
        voicemail.deleted_at = now
        voicemail.recording_url = None
        voicemail.delete_due_at = None
        return RecordingDeleteResult.DELETED
    if voicemail.delete_tries >= settings.voicemail_delete_max_tries:
        voicemail.delete_due_at = None
        voicemail.delete_abandoned_at = voicemail.delete_abandoned_at or now
        # The recording SID is the provider's id of the file, not the person: with it an
        # operator deletes the recording by hand. The URL (with our account SID) stays out.
        log.error(
            "callback.voicemail.delete_abandoned",
            voicemail_id=voicemail.id,
            recording_sid=voicemail.recording_sid,
            tries=voicemail.delete_tries,
        )
        return RecordingDeleteResult.ABANDONED
    wait = backoff_seconds(
        voicemail.delete_tries,
        base=settings.voicemail_delete_backoff_base_seconds,
        cap=settings.voicemail_delete_backoff_cap_seconds,
    )
    voicemail.delete_due_at = now + timedelta(seconds=wait)
    return RecordingDeleteResult.RETRYING


async def _try_delete(
    settings: CallbackSettings, voicemail: Voicemail, *, now: datetime
) -> RecordingDeleteResult:
    voicemail.delete_tries += 1
    gone = await _delete_at_provider(settings, voicemail)
    return _settle(settings, voicemail, gone=gone, now=now)


async def erase(
    *,
    session: AsyncSession,
    settings: CallbackSettings,
    phones: list[str],
    callback_ids: list[str],
    now: datetime,
) -> tuple[int, int]:
    """Forget these people's voicemails and delete the recordings at the provider.

    Returns (voicemails erased, recordings still at the provider). A Twilio recording is
    deleted through the Recordings API; a generic PBX's URL is forgotten (the PBX keeps its
    own files). One the provider would not delete keeps its URL and no `deleted_at`, and the
    worker's sweep tries again after a backoff (`delete_due_at`).
    """
    rows = await repository.voicemails_of(session, phones=phones, callback_ids=callback_ids)
    left = 0
    for voicemail in rows:
        if voicemail.deleted_at is None:
            if voicemail.provider != "twilio":
                _settle(settings, voicemail, gone=True, now=now)
            elif await _try_delete(settings, voicemail, now=now) != RecordingDeleteResult.DELETED:
                left += 1
        voicemail.phone = voicemail.transcript = None
        voicemail.erased_at = voicemail.erased_at or now
        voicemail.updated_at = now
    if rows:
        log.info("callback.voicemail.erased", voicemails=len(rows), left_at_provider=left)
    return len(rows), left


# ----------------------------------------------------------------------------- the retry sweep

SWEEP_RECORDING_DELETES = "sweep_recording_deletes"
# One sweep tries at most this many recordings; the rest wait for the next minute.
_SWEEP_BATCH = 50


class RecordingDeleteMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.tries = Counter(
            "ringback_voicemail_recording_deletes_total",
            "The worker's retries of deleting erased people's recordings at the provider, "
            "by result (deleted, retrying, abandoned).",
            ["result"],
            registry=registry,
        )


async def sweep_deletes(
    *,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
    now: datetime | None = None,
    metrics: RecordingDeleteMetrics | None = None,
) -> Tally[RecordingDeleteResult]:
    """Try again every recording delete that is due, each in its own short transaction.

    A row stays locked while its DELETE is in flight, so a crash mid-try rolls back and the
    try is not counted. Every try moves `delete_due_at` past `now`, so a sweep tries each
    recording once at most. It stops taking new rows when the job's time is nearly up.
    """
    now = now or utcnow()
    results: Tally[RecordingDeleteResult] = Tally()
    stop_at = time.monotonic() + max(
        0.0, settings.job_timeout_seconds - 2 * settings.voicemail_fetch_timeout_seconds
    )
    for _ in range(_SWEEP_BATCH):
        async with sessions() as session:
            voicemail = await repository.next_due_recording_delete(session, now=now)
            if voicemail is None:
                break
            result = await _try_delete(settings, voicemail, now=now)
            voicemail.updated_at = now
            await commit(session)
        results[result] += 1
        if metrics is not None:
            metrics.tries.labels(result=result).inc()
        if time.monotonic() >= stop_at:
            break
    if results:
        log.info("callback.voicemail.deletes_retried", **{str(k): v for k, v in results.items()})
    else:
        log.debug("callback.voicemail.deletes_idle")
    return results


async def sweep_recording_deletes(ctx: dict[str, Any]) -> int:
    """Cron: retry provider deletes erasure could not do; returns how many were tried."""
    state = state_of(ctx)
    metrics = state.job_metrics(RecordingDeleteMetrics)
    results = await sweep_deletes(sessions=state.sessions, settings=state.settings, metrics=metrics)
    return sum(results.values())
