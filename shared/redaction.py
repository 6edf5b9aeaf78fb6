"""What logs, metrics and spans may name of a request: its route's template, never its path.

Paths carry secrets and people: `/v1/self/{token}` holds a customer's self-service token,
`/v1/dnc/{phone}` a phone number. The template names the endpoint without them.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope


def route_of(scope: Scope) -> str:
    """The matched route's template, or `unmatched` before routing or when nothing matched."""
    route: Any = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
