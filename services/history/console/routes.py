"""The agent console: static files under `/console/` and the one thing they need to know.

The console is plain HTML, CSS and JavaScript modules in `console/` beside this file, shipped
as package data; nothing is built. History serves it because history's API is then
same-origin; callback's API is another origin, named by `config.json` and allowed by
callback's CORS setting. Only the files found at start are served (no directory listing, no
paths), each with a strict Content Security Policy: scripts and styles from this origin only,
and connections to this origin and callback's.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from services.history.settings import HistorySettings
from shared.errors import NotFound

CONSOLE_DIR = Path(__file__).parent

# Explicit types: a module script is refused unless served as JavaScript, whatever the
# host's mimetypes table says.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(callback_url: str) -> str:
    """Nothing inline, nothing from elsewhere; fetch() may reach history and callback only."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            # A voicemail is fetched with the agent's key and played from a blob: URL.
            "media-src blob:",
            f"connect-src 'self' {_origin(callback_url)}",
            "base-uri 'none'",
            # The sign-in form is handled by script; never let it submit the key anywhere.
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def console_router(settings: HistorySettings) -> APIRouter:
    """`/console/` and its files, and `/console/config.json` (callback's URL, the site's zone)."""
    callback_url = settings.console_callback_url or settings.peer_url("callback")
    headers = {
        "Content-Security-Policy": content_security_policy(callback_url),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidate every time (ETag): an upgrade reaches agents on their next load.
        "Cache-Control": "no-cache",
    }
    files = {
        path.name: path
        for path in sorted(CONSOLE_DIR.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES
    }
    router = APIRouter(prefix="/console", include_in_schema=False)

    def _file(name: str) -> Response:
        path = files.get(name)
        if path is None:
            raise NotFound("The console has no such file.")
        return FileResponse(path, media_type=CONTENT_TYPES[path.suffix], headers=headers)

    @router.get("")
    async def console_redirect() -> Response:
        # Relative, so it also works behind a proxy that mounts history under a path.
        return RedirectResponse("console/", status_code=308, headers=headers)

    @router.get("/")
    async def console_index() -> Response:
        return _file("index.html")

    @router.get("/wallboard")
    async def console_wallboard() -> Response:
        # A room's screen (§13): the one page here with an address of its own.
        return _file("wallboard.html")

    @router.get("/config.json")
    async def console_config() -> Response:
        # The site's zone: the console shows every time in it, not in the browser's.
        body = {"callback_url": callback_url, "site_timezone": settings.site_timezone}
        return JSONResponse(body, headers=headers)

    @router.get("/{name}")
    async def console_file(name: str) -> Response:
        return _file(name)

    return router
