"""Twilio Voice status and action callbacks (`POST /v1/webhooks/twilio`, docs/providers.md).

Twilio answers the inbound leg itself to run TwiML, so the parent call usually ends
`completed` even when nobody picked up. A missed call shows up as a `<Dial>` action with
`DialCallStatus` busy/no-answer/failed/canceled, a child leg (`outbound-dial`) ending so, an
`<Enqueue>` action with `QueueResult=hangup`, or a plain inbound status callback ending so.

The number the customer dialed is the parent call's `To`; on a child leg `To` is the agent,
so a child leg's own `To` is never used. The webhook URL may name the queue (`?queue=`),
inside the signed URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from starlette.responses import Response

from services.intake.telephony.base import (
    CallReport,
    Decision,
    Delivery,
    LegStore,
    NotConfigured,
    PayloadRejected,
    Provider,
    ProviderRequest,
    Unauthenticated,
    url_queue,
)
from shared.contracts import Accepted
from shared.db import utcnow
from shared.jsonutil import loads

if TYPE_CHECKING:
    from services.intake.models import CallLeg
    from services.intake.settings import IntakeSettings

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
MISSED = frozenset({"busy", "no-answer", "failed", "canceled"})
# A Dial that ended so leaves the caller on the line: they may leave a message (`canceled`
# is the caller hanging up, so nobody is there to hear the prompt).
VOICEMAIL_AFTER = frozenset({"busy", "no-answer", "failed"})
# A child leg or a Dial that reached one of these was picked up by someone.
ANSWERED = frozenset({"in-progress", "completed", "answered"})
_DEFAULT_PORTS = {"https": 443, "http": 80}
_MAX_VALUE = 512
_FORM = "application/x-www-form-urlencoded"

Params = Mapping[str, Sequence[str]]


def compute_signature(token: str, url: str, params: Params | None = None) -> str:
    """Twilio's `X-Twilio-Signature` for `url` and the (form) parameters."""
    data = url
    for name in sorted(params or {}):
        for value in sorted((params or {})[name]):
            data += name + value
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, and with the scheme's default port added or removed."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    variants = [url]
    if default is None:
        return variants
    try:
        port = parts.port
    except ValueError:
        return variants
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: -len(host)] if host != parts.netloc else ""
    if port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{default}")))
    elif port == default:
        bare = host.rsplit(":", 1)[0]
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{bare}")))
    return variants


def _is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == _FORM


def verify(*, token: str, url: str, body: bytes, content_type: str | None, signature: str) -> None:
    """Raise `Unauthenticated` unless `signature` is Twilio's for this request."""
    if not signature or len(signature) > 200:
        raise Unauthenticated("X-Twilio-Signature is missing.")
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    params: Params | None
    if "bodySHA256" in query:
        # JSON-body variant: the body is pinned by its hash in the (signed) URL.
        expected_hash = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(expected_hash.encode(), query["bodySHA256"][0].encode()):
            raise Unauthenticated("bodySHA256 does not match the body.")
        params = None
    elif _is_form(content_type):
        params = _form(body.decode("utf-8", errors="replace"))
    else:
        params = None
    param_variants: list[Params | None] = [params]
    if params and any(len(set(values)) < len(values) for values in params.values()):
        # A name repeated with the same value: Twilio's Python validator counts it once,
        # its Node validator (and docs/providers.md) every time. Accept either reading.
        param_variants.append({name: sorted(set(values)) for name, values in params.items()})
    offered = signature.encode()
    matched = False
    for candidate in url_variants(url):
        for variant in param_variants:
            expected = compute_signature(token, candidate, variant).encode()
            # Check every variant in constant time, without an early exit.
            matched |= hmac.compare_digest(expected, offered)
    if not matched:
        raise Unauthenticated("X-Twilio-Signature does not match.")


def _form(text: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    return params


@dataclass(frozen=True, slots=True)
class TwilioEvent:
    kind: str  # dial-action | enqueue-action | child-status | status
    call_sid: str
    parent_sid: str | None
    direction: str | None
    call_status: str | None
    dial_status: str | None
    dial_sid: str | None
    queue_result: str | None
    caller: str | None
    callee: str | None
    occurred_at: datetime
    # From the (signed) webhook URL's `?queue=`.
    queue: str | None = None

    @property
    def is_action(self) -> bool:
        return self.kind in {"dial-action", "enqueue-action"}

    @property
    def dialed(self) -> str | None:
        """`To` when it is the number the customer dialed: never on a leg Twilio dialed out."""
        if self.kind == "child-status" or self.parent_sid is not None:
            return None
        return self.callee


def _params_of(request: ProviderRequest) -> dict[str, str]:
    if _is_form(request.content_type):
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadRejected("the body is not valid UTF-8", status=400) from None
        form = _form(text)
        return {name: values[-1] for name, values in form.items()}
    media = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        try:
            document = loads(request.body)
        except ValueError:
            raise PayloadRejected("the body is not valid JSON", status=400) from None
        if not isinstance(document, dict):
            raise PayloadRejected("the JSON body must be an object")
        return {str(k): str(v) for k, v in document.items() if isinstance(v, str | int)}
    raise PayloadRejected(f"send the body as {_FORM}", status=415)


def _occurred_at(raw: str | None) -> datetime:
    if raw:
        try:
            parsed = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return utcnow()


def parse_event(request: ProviderRequest, *, queue: str | None = None) -> TwilioEvent:
    params = _params_of(request)
    for name, value in params.items():
        if len(value) > _MAX_VALUE or any(ord(c) < 32 and c not in "\t\r\n" for c in value):
            raise PayloadRejected(f"{name[:40]}: too long or holds control characters")
    call_sid = params.get("CallSid", "").strip()
    if not call_sid or len(call_sid) > 64:
        raise PayloadRejected("CallSid: required (at most 64 characters)")
    direction = params.get("Direction") or None
    parent = params.get("ParentCallSid") or None
    if "DialCallStatus" in params:
        kind = "dial-action"
    elif "QueueResult" in params:
        kind = "enqueue-action"
    elif direction == "outbound-dial" and parent:
        kind = "child-status"
    else:
        kind = "status"
    if kind == "status" and not params.get("CallStatus"):
        raise PayloadRejected("CallStatus: required on a status callback")
    return TwilioEvent(
        kind=kind,
        call_sid=call_sid,
        parent_sid=parent[:64] if parent else None,
        direction=direction,
        call_status=params.get("CallStatus") or None,
        dial_status=params.get("DialCallStatus") or None,
        dial_sid=(params.get("DialCallSid") or "")[:64] or None,
        queue_result=params.get("QueueResult") or None,
        caller=params.get("From") or None,
        callee=params.get("To") or None,
        occurred_at=_occurred_at(params.get("Timestamp")),
        queue=queue,
    )


def _external_id(event: TwilioEvent, params_key: str) -> str:
    return f"{event.call_sid}:{event.kind}:{params_key}"[:200]


class TwilioProvider(Provider[TwilioEvent]):
    name = "twilio"
    route = "/twilio"
    queue_in_url: ClassVar[bool] = True
    summary = "Twilio Voice status and action callbacks (form-encoded, X-Twilio-Signature)"
    openapi_body: ClassVar[dict[str, Any] | None] = {
        "required": True,
        "content": {_FORM: {"schema": {"type": "object"}}},
    }

    def authenticate(self, settings: IntakeSettings, request: ProviderRequest) -> str | None:
        if settings.twilio_auth_token is None or not settings.twilio_auth_token.get_secret_value():
            raise NotConfigured("Twilio webhooks are not enabled: RINGBACK_TWILIO_AUTH_TOKEN.")
        base = (settings.public_base_url or "").rstrip("/")
        url = base + request.path + (f"?{request.query}" if request.query else "")
        verify(
            token=settings.twilio_auth_token.get_secret_value(),
            url=url,
            body=request.body,
            content_type=request.content_type,
            signature=request.headers.get("x-twilio-signature", ""),
        )
        return None

    def parse(self, request: ProviderRequest) -> Delivery[TwilioEvent]:
        queue, ignored = url_queue(request.query)
        event = parse_event(request, queue=queue)
        if event.kind == "dial-action":
            key = f"{event.dial_sid or ''}:{event.dial_status}"
        elif event.kind == "enqueue-action":
            key = event.queue_result or ""
        else:
            key = event.call_status or ""
        summary = {"kind": event.kind, "status": event.dial_status or event.call_status}
        if event.queue_result:
            summary["queue_result"] = event.queue_result
        if ignored:
            summary["queue_ignored"] = ignored
        return Delivery(event=event, external_id=_external_id(event, key), summary=summary)

    async def interpret(self, delivery: Delivery[TwilioEvent], legs: LegStore) -> Decision:
        event = delivery.event
        notes: dict[str, object] = {}
        if event.kind == "child-status":
            assert event.parent_sid is not None
            parent, _ = await legs.open(event.parent_sid)
            # On a child leg `To` is the agent; the customer called the parent, and dialed
            # the parent's `To`, known only if one of the parent's requests reached us.
            caller = parent.caller or event.caller
            notes["caller_from"] = "parent" if parent.caller else "child"
            if parent.callee is None:
                notes["dialed"] = "unknown: no request of the parent call seen"
            return self._outcome(event, parent, event.call_status, caller, notes)
        leg, _ = await legs.open(event.call_sid)
        if event.direction is not None and leg.direction is None:
            leg.direction = event.direction
        if leg.caller is None and event.caller:
            leg.caller = event.caller[:64]
        dialed = event.dialed
        # A cut-off number would be another number: longer values are not kept as one.
        if leg.callee is None and dialed and len(dialed) <= 64:
            leg.callee = dialed
        if leg.queue is None and event.queue:
            leg.queue = event.queue
        # Actions on an inbound call may omit Direction [U]: they are treated as inbound.
        inbound = (leg.direction or "inbound") == "inbound"
        if not inbound:
            return Decision(report=None, notes={"reason": "not an inbound call"})
        if event.kind == "dial-action":
            return self._outcome(event, leg, event.dial_status, leg.caller, notes)
        if event.kind == "enqueue-action":
            # `system-error`: the caller hung up before being fully enqueued, still missed (§11);
            # `leave` is a caller who asked for a callback in the queue, not a missed call.
            status = {
                "hangup": "no-answer",
                "system-error": "no-answer",
                "bridged": "in-progress",
            }.get(event.queue_result or "")
            return self._outcome(event, leg, status, leg.caller, notes)
        status = event.call_status
        if status in MISSED:
            leg.ended_at = leg.ended_at or utcnow()
            return self._outcome(event, leg, status, leg.caller, notes)
        if status == "completed":
            leg.ended_at = leg.ended_at or utcnow()
            if leg.answered_at is not None:
                report = self._report(event, leg, "answered", leg.caller)
                return Decision(report=report, leg=leg)
            notes["reason"] = "completed without a known answer"
        return Decision(report=None, notes=notes)

    def _outcome(
        self,
        event: TwilioEvent,
        leg: CallLeg,
        status: str | None,
        caller: str | None,
        notes: dict[str, object],
    ) -> Decision:
        if status in MISSED:
            if leg.answered_at is not None:
                return Decision(report=None, notes={**notes, "reason": "someone answered"})
            report = self._report(event, leg, "missed", caller)
            return Decision(report=report, leg=leg, notes=notes)
        if status in ANSWERED:
            leg.answered_at = leg.answered_at or utcnow()
            # The answer is reported when the parent call ends, or now if it already has.
            if leg.ended_at is not None:
                report = self._report(event, leg, "answered", caller)
                return Decision(report=report, leg=leg, notes=notes)
        return Decision(report=None, notes=notes)

    def _report(
        self, event: TwilioEvent, leg: CallLeg, outcome: str, caller: str | None
    ) -> CallReport:
        """The report of `leg`'s call, the parent's when `event` is about a child leg."""
        call_id = event.parent_sid if event.kind == "child-status" else event.call_sid
        assert call_id is not None
        status = event.dial_status or event.queue_result or event.call_status or ""
        return CallReport(
            provider=self.name,
            call_id=call_id,
            outcome="missed" if outcome == "missed" else "answered",
            caller=caller,
            callee=leg.callee,
            occurred_at=event.occurred_at,
            status=status,
            # This request's URL first: each of Twilio's URLs is configured on its own.
            queue=event.queue or leg.queue,
            details={"twilio_kind": event.kind},
        )

    def respond(self, request: ProviderRequest, accepted: Accepted) -> Response:
        if _looks_like_action(request):
            if _voicemail_wanted(request):
                return _twiml(accepted.id, accepted.status, _to_voicemail(request))
            return _twiml(accepted.id, accepted.status)
        return super().respond(request, accepted)

    def respond_rejected(self, request: ProviderRequest, inbound_id: str) -> Response | None:
        # An error answer to an action URL makes Twilio tell the caller "an application
        # error has occurred"; the payload is kept, so let the call go on.
        return _twiml(inbound_id, "rejected") if _looks_like_action(request) else None


def _looks_like_action(request: ProviderRequest) -> bool:
    text = request.body[:8192].decode("utf-8", errors="replace")
    names = {name for name, _ in parse_qsl(text, keep_blank_values=True)}
    return bool(names & {"DialCallStatus", "QueueResult"})


def _voicemail_wanted(request: ProviderRequest) -> bool:
    """A `<Dial action>` URL with `?voicemail=1` whose agent did not answer (§11): the caller
    is asked for a message, which joins this call's missed call."""
    if ("voicemail", "1") not in parse_qsl(request.query):
        return False
    text = request.body[:8192].decode("utf-8", errors="replace")
    params = dict(parse_qsl(text, keep_blank_values=True))
    return params.get("DialCallStatus") in VOICEMAIL_AFTER


def _to_voicemail(request: ProviderRequest) -> bytes:
    # Relative: Twilio resolves it against this request's URL, so it is signed as ours.
    queue, _ = url_queue(request.query)
    target = "/v1/twiml/voicemail" + (f"?{urlencode({'queue': queue})}" if queue else "")
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><Response><Redirect method="POST">'
        + escape(target).encode()
        + b"</Redirect></Response>"
    )


def _twiml(inbound_id: str, status: str, document: bytes = TWIML_EMPTY) -> Response:
    return Response(
        document,
        status_code=200,
        media_type="text/xml",
        headers={"x-ringback-inbound-id": inbound_id, "x-ringback-status": status},
    )
