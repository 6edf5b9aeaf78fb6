"""The interface every dialer implements, and how a request to the phone system can fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx


class NotPlaced(Exception):
    """The phone system certainly placed no call; the reason is safe to show the agent."""


class FateUnknown(Exception):
    """The request may or may not have placed a call: it is never repeated by itself."""


@dataclass(frozen=True, slots=True)
class DialRequest:
    """One dial, as a dialer needs it: agent first, then the customer."""

    dial_id: str
    callback_id: str
    agent_id: str
    agent_phone: str | None
    agent_sip: str | None
    customer_phone: str
    caller_id: str
    machine_detection: bool


class PhoneDialer(Protocol):
    name: str

    async def place(self, request: DialRequest) -> str | None:
        """Ask the phone system to ring the agent; its id for the call, if it gave one."""
        ...


def refused(response: httpx.Response, *, code: object = None) -> NotPlaced:
    """A refusal the agent can read, without what the phone system said of the numbers."""
    detail = f"the phone system answered HTTP {response.status_code}"
    if isinstance(code, int | str) and str(code).isdigit():
        detail += f" (error {code})"
    return NotPlaced(detail)


async def post(client: httpx.AsyncClient, url: str, **kwargs: object) -> httpx.Response:
    """POST once; sort a transport failure into "no call" and "perhaps a call"."""
    try:
        return await client.post(url, **kwargs)  # type: ignore[arg-type]
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # Nothing reached the phone system: certainly no call.
        raise NotPlaced(f"the phone system could not be reached ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        # Sent, then lost: the call may have been placed.
        raise FateUnknown(f"no answer from the phone system ({type(exc).__name__})") from exc
