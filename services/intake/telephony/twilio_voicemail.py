"""Twilio's voicemail requests (§11): the `<Record action>`, the recording status callback
and the transcription callback, each a piece of one voicemail keyed on the call's `CallSid`.

The recording status callback carries no caller number; the `<Record action>` and the
transcription callback carry `From`. The pieces arrive in any order, twice, or not at all
(`RecordingStatus` `absent`: the caller said nothing), so each is stored as it comes and
`services.intake.voicemail` forwards the voicemail once the recording and the caller are known.
This adapter shares the name `twilio` with the call webhook: its legs are the same calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from services.intake.telephony.base import (
    CallReport,
    Decision,
    Delivery,
    LegStore,
    NotConfigured,
    PayloadRejected,
    Provider,
    ProviderRequest,
    VoicemailFacts,
    cut_transcript,
    url_queue,
)
from services.intake.telephony.twilio import _params_of, verify
from shared.db import utcnow

if TYPE_CHECKING:
    from services.intake.settings import IntakeSettings

Piece = Literal["record-action", "recording", "transcription"]

# Routes under `/v1/webhooks` (the TwiML in docs/api.md points at them).
ROUTES: dict[Piece, str] = {
    "record-action": "/twilio/voicemail",
    "recording": "/twilio/recording",
    "transcription": "/twilio/transcription",
}
_MAX_VALUE = 512
# Twilio sends the transcript whole; it is cut (`TRANSCRIPT_MAX_CHARS`) rather than refused.
_MAX_TRANSCRIPT_IN = 64 * 1024
_SID_LENGTH = 64
_LONGEST_RECORDING = 24 * 3600


@dataclass(frozen=True, slots=True)
class VoicemailPiece:
    piece: Piece
    call_sid: str
    caller: str | None
    callee: str | None
    recording_sid: str | None
    recording_url: str | None
    # `completed` (available), `absent`/`failed` (no recording), `in-progress`.
    recording_status: str | None
    duration: int | None
    transcript: str | None
    transcription_sid: str | None
    transcription_status: str | None
    queue: str | None
    occurred_at: datetime

    @property
    def facts(self) -> VoicemailFacts:
        """What this piece adds: a recording only once it is available."""
        available = self.piece == "recording" and self.recording_status == "completed"
        completed = self.piece == "transcription" and self.transcription_status == "completed"
        return VoicemailFacts(
            recording_url=self.recording_url if available else None,
            recording_sid=self.recording_sid if available else None,
            duration=self.duration if available else None,
            transcript=self.transcript if completed else None,
        )


def _sid(params: dict[str, str], name: str, *, required: bool = False) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > _SID_LENGTH or (required and not value):
        raise PayloadRejected(f"{name}: required, at most {_SID_LENGTH} characters")
    return value or None


def _recording_url(raw: str | None) -> str | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not value.lower().startswith(("https://", "http://")):
        raise PayloadRejected("RecordingUrl: not an http(s) URL")
    return value


def _duration(raw: str | None) -> int | None:
    value = (raw or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > _LONGEST_RECORDING:
        raise PayloadRejected("RecordingDuration: whole seconds, at most a day")
    return int(value)


def parse_piece(piece: Piece, request: ProviderRequest) -> VoicemailPiece:
    params = _params_of(request)
    for name, value in params.items():
        limit = _MAX_TRANSCRIPT_IN if name == "TranscriptionText" else _MAX_VALUE
        if len(value) > limit or any(ord(c) < 32 and c not in "\t\r\n" for c in value):
            raise PayloadRejected(f"{name[:40]}: too long or holds control characters")
    queue, _ = url_queue(request.query)
    call_sid = _sid(params, "CallSid", required=True)
    assert call_sid is not None
    return VoicemailPiece(
        piece=piece,
        call_sid=call_sid,
        caller=params.get("From") or None,
        callee=params.get("To") or None,
        recording_sid=_sid(params, "RecordingSid"),
        recording_url=_recording_url(params.get("RecordingUrl")),
        recording_status=params.get("RecordingStatus") or None,
        duration=_duration(params.get("RecordingDuration")),
        transcript=cut_transcript(params.get("TranscriptionText")),
        transcription_sid=_sid(params, "TranscriptionSid"),
        transcription_status=params.get("TranscriptionStatus") or None,
        queue=queue,
        occurred_at=utcnow(),
    )


class TwilioVoicemail(Provider[VoicemailPiece]):
    """One of the three voicemail requests; not in `REGISTRY` (its routes are its own)."""

    name = "twilio"

    def __init__(self, piece: Piece) -> None:
        self.piece: Piece = piece
        self.route = ROUTES[piece]

    def authenticate(self, settings: IntakeSettings, request: ProviderRequest) -> str | None:
        token = settings.twilio_auth_token
        if token is None or not token.get_secret_value():
            raise NotConfigured("Twilio webhooks are not enabled: RINGBACK_TWILIO_AUTH_TOKEN.")
        base = (settings.public_base_url or "").rstrip("/")
        verify(
            token=token.get_secret_value(),
            url=base + request.path + (f"?{request.query}" if request.query else ""),
            body=request.body,
            content_type=request.content_type,
            signature=request.headers.get("x-twilio-signature", ""),
        )
        return None

    def parse(self, request: ProviderRequest) -> Delivery[VoicemailPiece]:
        event = parse_piece(self.piece, request)
        # Twilio retries repeat these; a recording's or transcript's later status is news.
        if self.piece == "recording":
            key = f"{event.recording_sid or ''}:{event.recording_status or ''}"
        elif self.piece == "transcription":
            key = f"{event.transcription_sid or ''}:{event.transcription_status or ''}"
        else:
            key = event.recording_sid or ""
        summary = {"kind": f"voicemail-{self.piece}"}
        status = event.recording_status or event.transcription_status
        if status:
            summary["status"] = status
        return Delivery(
            event=event,
            external_id=f"{event.call_sid}:{self.piece}:{key}"[:200],
            summary=summary,
        )

    async def interpret(self, delivery: Delivery[VoicemailPiece], legs: LegStore) -> Decision:
        event = delivery.event
        leg, _ = await legs.open(event.call_sid)
        if leg.caller is None and event.caller:
            leg.caller = event.caller[:64]
        # On these requests `To` is the number the caller dialed (there is no child leg).
        if leg.callee is None and event.callee and len(event.callee) <= 64:
            leg.callee = event.callee
        if leg.queue is None and event.queue:
            leg.queue = event.queue
        report = CallReport(
            provider=self.name,
            call_id=event.call_sid,
            outcome="voicemail",
            caller=leg.caller,
            callee=leg.callee,
            occurred_at=event.occurred_at,
            status=f"voicemail-{self.piece}",
            queue=event.queue or leg.queue,
            voicemail=event.facts,
        )
        return Decision(report=report, leg=leg)
