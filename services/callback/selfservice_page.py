"""The customer's self-service page: `/v1/self/{token}` answered as HTML to a browser.

The link in every confirmation opens this page. It is the same resource as the JSON view, so
the choice is made per request by `SelfServiceRoute`: a GET whose Accept prefers text/html
gets the page, a POST of a plain HTML form (application/x-www-form-urlencoded) is handled here
and answered with 303 See Other; everything else goes to the JSON handler unchanged.

The page needs no JavaScript. Redirects carry a path-only Location, so they work unchanged
behind intake, which forwards these paths to us.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

import structlog
from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import HTMLResponse, Response

from services.callback import selfservice_actions, survey_replies
from services.callback.catalogs import N_, translate
from services.callback.jobs import ArqNotificationQueue
from services.callback.schemas import SelfServiceView
from services.callback.selfservice import verify_token
from services.callback.settings import CallbackSettings
from services.callback.templates import clock_text, date_text
from shared.db import commit, utcnow
from shared.errors import ProblemError
from shared.routing import JsonRoute
from shared.vocabulary import LANGUAGES, CallbackStatus, Language

log = structlog.get_logger("ringback.callback.selfservice_page")

_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_EN_DASH = "\u2013"

# The page's words are in the message catalogs (`catalogs`), under `page.`; the templates look
# them up with `_()`. Times and "when" phrases come from `templates`, as in the messages.
_HEADINGS: Final[dict[str, str]] = {
    CallbackStatus.PENDING: N_("page.status.pending"),
    CallbackStatus.SCHEDULED: N_("page.status.scheduled"),
    CallbackStatus.IN_PROGRESS: N_("page.status.in_progress"),
    CallbackStatus.COMPLETED: N_("page.status.completed"),
    CallbackStatus.FAILED: N_("page.status.failed"),
    CallbackStatus.CANCELLED: N_("page.status.cancelled"),
    CallbackStatus.EXPIRED: N_("page.status.expired"),
}
_WAITING: Final = frozenset({CallbackStatus.PENDING, CallbackStatus.SCHEDULED})
_NOTES: Final[dict[str, str]] = {
    CallbackStatus.IN_PROGRESS: N_("page.note.in_progress"),
    CallbackStatus.COMPLETED: N_("page.note.completed"),
}
_NOTE_CLOSED: Final = N_("page.note.closed")
# `?done=`: what was just done, said only while the callback still stands where it left it.
_DONE: Final[dict[str, tuple[str, CallbackStatus]]] = {
    "cancelled": (N_("page.done.cancelled"), CallbackStatus.CANCELLED),
    "rebooked": (N_("page.done.rebooked"), CallbackStatus.SCHEDULED),
    "survey": (N_("page.done.survey"), CallbackStatus.COMPLETED),
}
_ERRORS: Final[dict[str, str]] = {
    "slot_full": N_("page.error.slot_full"),
    "closed": N_("page.error.closed"),
    "no_slot": N_("page.error.no_slot"),
    "bad_slot": N_("page.error.bad_slot"),
    "bad_form": N_("page.error.bad_form"),
    # The day's rebooks are used up (`ceilings`): the way left is a phone call.
    "too_many_changes": N_("page.rebook.limit"),
    # Answered already, or past the 72 hours a survey takes answers in.
    "survey_closed": N_("page.error.survey_closed"),
}
# The survey's scale (§13), best last, as the page's radio buttons.
SCORES: Final = (1, 2, 3, 4, 5)
# A link that no longer works: (heading, text) for 410 Gone and for 404.
_FAILURES: Final[dict[int, tuple[str, str]]] = {
    410: (N_("page.gone.heading"), N_("page.gone.text")),
    404: (N_("page.missing.heading"), N_("page.missing.text")),
}


# ----------------------------------------------------------------------------- negotiation


def _q(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def _accept_q(accept: str, media_type: str) -> float:
    """The q the Accept header gives `media_type`, from its most specific matching range."""
    kind = media_type.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for part in accept.split(",")[:32]:
        media, _, params = part.partition(";")
        media = media.strip().lower()
        if media == media_type:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, _q(params))
    return best[1]


def prefers_html(accept: str | None) -> bool:
    """A browser (text/html over JSON); API clients, `*/*` and no Accept at all get JSON."""
    if not accept:
        return False
    html = _accept_q(accept, "text/html")
    return html > 0 and html > _accept_q(accept, "application/json")


def is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == _FORM_MEDIA_TYPE


def _language(value: str | None) -> Language | None:
    return value if value in LANGUAGES else None


def accepted_language(header: str | None, default: Language) -> Language:
    """The Accept-Language choice among ours, or `default`."""
    best, best_q = default, 0.0
    for part in (header or "").split(",")[:32]:
        tag, _, params = part.partition(";")
        language = _language(tag.strip().lower().split("-", 1)[0])
        q = _q(params)
        if language is not None and q > best_q:
            best, best_q = language, q
    return best


class SelfServiceRoute(JsonRoute):
    """`/v1/self/{token}`: the page for browsers and HTML forms, JSON for everyone else."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        json_handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            if request.method == "GET" and prefers_html(request.headers.get("accept")):
                return await show_page(request)
            if request.method == "POST" and is_form(request.headers.get("content-type")):
                return await submit_form(request)
            return await json_handler(request)

        return route_handler


# ----------------------------------------------------------------------------- rendering


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("services.callback", "web/templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _stylesheet() -> tuple[Markup, str]:
    """The page's CSS and its CSP source: a hash, so the page needs no per-response nonce."""
    css = (resources.files("services.callback") / "web" / "templates" / "page.css").read_text(
        encoding="utf-8"
    )
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    # Our own file, put in verbatim: escaping would break its quoted selectors.
    return Markup(css), f"'sha256-{digest}'"


@dataclass(frozen=True, slots=True)
class SlotChoice:
    html_id: str
    slot_id: str
    label: str


@dataclass(slots=True)
class DayChoices:
    legend: str
    slots: list[SlotChoice] = field(default_factory=list)


def _day_legend(language: Language, local: datetime, today: date) -> str:
    days = (local.date() - today).days
    text = date_text(language, local)
    if days in (0, 1):
        text = translate(
            language, N_("page.today") if days == 0 else N_("page.tomorrow"), date=text
        )
    return text[:1].upper() + text[1:]


def _free_days(view: SelfServiceView, now: datetime) -> list[DayChoices]:
    """The view's free slots (`selfservice_actions.free_slots`) by local day, as radio buttons."""
    zone = ZoneInfo(view.timezone)
    today = now.astimezone(zone).date()
    days: dict[date, DayChoices] = {}
    for slot in view.free_slots:
        start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
        span = (clock_text(start, view.language), clock_text(end, view.language))
        day = days.get(start.date())
        if day is None:
            day = days[start.date()] = DayChoices(_day_legend(view.language, start, today))
        day.slots.append(
            SlotChoice(
                html_id=f"slot-{slot.start.strftime('%Y%m%d%H%M')}",
                slot_id=slot.id,
                label=_EN_DASH.join(span),
            )
        )
    return list(days.values())


def _html(template: str, *, status: int, language: Language, **context: Any) -> HTMLResponse:
    """Render `template` with the security headers every page carries.

    The token is in the URL, so the page is never stored and never sent on as a Referer.
    """
    css, css_source = _stylesheet()
    body = (
        _environment()
        .get_template(template)
        .render(lang=language, _=functools.partial(translate, language), css=css, **context)
    )
    csp = (
        f"default-src 'none'; style-src {css_source}; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Content-Language": language,
            "Vary": "Accept, Accept-Language",
        },
    )


def _self_path(token: str) -> str:
    return f"/v1/self/{quote(token, safe='')}"


def _language_links(current: Language, extra: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "lang": language,
            "name": translate(language, "page.language.name"),
            "href": "?" + urlencode({**extra, "lang": language}),
            "current": language == current,
        }
        for language in LANGUAGES
    ]


def _failure_page(request: Request, status: int, explicit: Language | None) -> HTMLResponse:
    """404 or 410 without a word about what the link named, in the reader's language."""
    settings = _settings(request)
    language = explicit or accepted_language(
        request.headers.get("accept-language"), settings.default_language
    )
    status = 410 if status == 410 else 404
    heading, text = _FAILURES[status]
    return _html(
        "failure.html",
        status=status,
        language=language,
        heading=translate(language, heading),
        text=translate(language, text),
        languages=_language_links(language, {}),
    )


async def _page(
    request: Request,
    *,
    token: str,
    explicit: Language | None,
    status: int = 200,
    error: str | None = None,
    done: str | None = None,
    confirm: bool = False,
) -> HTMLResponse:
    settings = _settings(request)
    now = utcnow()
    async with _sessions(request)() as session:
        try:
            view = await selfservice_actions.self_view(
                session=session, settings=settings, token=token, now=now, language=explicit
            )
        except ProblemError as exc:
            if exc.status in (404, 410):
                return _failure_page(request, exc.status, explicit)
            raise
        callback_id = verify_token(settings, token)
        survey_open = callback_id is not None and (
            await survey_replies.open_on_page(session, callback_id=callback_id, now=now) is not None
        )
    confirm = confirm and view.can_cancel
    days = [] if confirm else _free_days(view, now)
    language = view.language
    waiting = view.status in _WAITING
    note = None if waiting else translate(language, _NOTES.get(view.status, _NOTE_CLOSED))
    said, stands = _DONE.get(done or "", ("", None))
    notice = translate(language, said) if stands == view.status else None
    path = _self_path(token)
    extra = {"confirm": "cancel"} if confirm else {}
    return _html(
        "page.html",
        status=status,
        language=view.language,
        view=view,
        heading=translate(language, _HEADINGS[view.status]),
        when_line=translate(language, "page.when", when=view.when) if waiting else None,
        note=note,
        notice=notice,
        error=translate(language, _ERRORS[error]) if error else None,
        confirm=confirm,
        days=days,
        days_ahead=selfservice_actions.days_ahead(settings),
        path=path,
        back_href=path + (f"?lang={explicit}" if explicit else ""),
        form_lang=explicit,
        languages=_language_links(view.language, extra),
        survey_open=survey_open and not confirm,
        scores=SCORES,
    )


# ----------------------------------------------------------------------------- endpoints


def _settings(request: Request) -> CallbackSettings:
    settings = request.app.state.settings
    assert isinstance(settings, CallbackSettings)
    return settings


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    return factory


async def show_page(request: Request) -> Response:
    """GET with `?lang=`, `?done=cancelled|rebooked` and `?confirm=cancel` (the cancel step)."""
    query = request.query_params
    return await _page(
        request,
        token=request.path_params["token"],
        explicit=_language(query.get("lang")),
        done=query.get("done"),
        confirm=query.get("confirm") == "cancel",
    )


def _form(body: bytes) -> dict[str, str] | None:
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in parsed.items() if values}


def _form_error(exc: ProblemError, slot_id: str | None) -> str:
    if exc.status == 429:
        return "too_many_changes"
    if exc.status == 409:
        return "slot_full" if exc.slug == "slot-full" else "closed"
    if exc.status == 422:
        return "bad_slot" if slot_id else "no_slot"
    return "bad_form"


async def submit_form(request: Request) -> Response:
    """`action=cancel` or `action=rebook&slot_id=...`: 303 to the page, or the page with why not.

    A refused change is rolled back in full before the page is shown again, since the
    response is an ordinary page rather than an error the session would roll back for us.
    """
    token: str = request.path_params["token"]
    form = _form(await request.body())
    explicit = _language((form or {}).get("lang"))
    action = (form or {}).get("action")
    if action == "survey":
        return await _answer_survey(request, token=token, form=form or {}, explicit=explicit)
    if action not in ("cancel", "rebook"):
        return await _page(request, token=token, explicit=explicit, status=422, error="bad_form")
    slot_id = (form or {}).get("slot_id") or None
    settings = _settings(request)
    async with _sessions(request)() as session:
        try:
            await selfservice_actions.self_act(
                session=session,
                settings=settings,
                token=token,
                action=action,
                slot_id_in=slot_id[:64] if slot_id else None,
                queue=ArqNotificationQueue(request.app.state.redis),
                language=explicit,
            )
        except ProblemError as exc:
            await session.rollback()
            refused = exc
        else:
            await commit(session)
            done = "cancelled" if action == "cancel" else "rebooked"
            query = {"done": done, **({"lang": explicit} if explicit else {})}
            return Response(
                status_code=303,
                headers={
                    "Location": f"{_self_path(token)}?{urlencode(query)}",
                    "Cache-Control": "no-store",
                    "Referrer-Policy": "no-referrer",
                },
            )
    if refused.status in (404, 410):
        return _failure_page(request, refused.status, explicit)
    log.info("callback.self_service.form_refused", status=refused.status, slug=refused.slug)
    return await _page(
        request,
        token=token,
        explicit=explicit,
        status=refused.status,
        error=_form_error(refused, slot_id),
    )


async def _answer_survey(
    request: Request, *, token: str, form: dict[str, str], explicit: Language | None
) -> Response:
    """`action=survey&score=1..5&comment=...`: the one-question page's answer (§13)."""
    raw_score = form.get("score", "")
    if raw_score not in {str(n) for n in SCORES}:
        return await _page(request, token=token, explicit=explicit, status=422, error="bad_form")
    comment = form.get("comment", "").strip()[: survey_replies.COMMENT_MAX] or None
    settings = _settings(request)
    callback_id = verify_token(settings, token)
    if callback_id is None:
        # A forged or expired link: the same page as for any other use of it.
        return await _page(request, token=token, explicit=explicit)
    async with _sessions(request)() as session:
        answered = await survey_replies.answer_on_page(
            session,
            callback_id=callback_id,
            score=survey_replies.Score(int(raw_score), comment),
            now=utcnow(),
        )
        await commit(session)
    if not answered:
        return await _page(
            request, token=token, explicit=explicit, status=409, error="survey_closed"
        )
    query = {"done": "survey", **({"lang": explicit} if explicit else {})}
    return Response(
        status_code=303,
        headers={
            "Location": f"{_self_path(token)}?{urlencode(query)}",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
