"""Route classes shared by the services' routers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from shared.errors import UnsupportedMediaType


def is_json_media_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JsonRoute(APIRoute):
    """A route whose body, when present, must be JSON: anything else is a 415, not a 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        expects_body = self.body_field is not None

        async def route_handler(request: Request) -> Response:
            if expects_body and request.method in {"POST", "PUT", "PATCH"}:
                has_body = request.headers.get("content-length", "0") != "0" or (
                    "transfer-encoding" in request.headers
                )
                if has_body and not is_json_media_type(request.headers.get("content-type")):
                    raise UnsupportedMediaType("Send the body as application/json.")
            return await handler(request)

        return route_handler
