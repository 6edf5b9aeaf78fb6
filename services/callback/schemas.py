"""What callback's API answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

CallbackStatus = Literal[
    "pending", "scheduled", "in_progress", "completed", "failed", "cancelled", "expired"
]


class CallbackCreated(BaseModel):
    """The answer to `POST /v1/callbacks`: 201 for a new callback, 200 merged or repeated."""

    id: str
    status: CallbackStatus
    merged: bool
    contact_count: int
    due_at: datetime
    sla_deadline: datetime


class ConsentOut(BaseModel):
    sms: bool
    email: bool


class NotificationOut(BaseModel):
    """A message to the customer and how far it got (no text, no recipient)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    channel: Literal["sms", "email"]
    provider: str
    status: Literal["queued", "sending", "sent", "failed", "dead"]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class CallbackOut(BaseModel):
    id: str
    phone: str
    email: str | None
    name: str | None
    language: Literal["fi", "sv", "en"]
    status: CallbackStatus
    source: str
    channel: str
    priority: int
    first_contact_at: datetime
    due_at: datetime
    sla_deadline: datetime
    contact_count: int
    consent: ConsentOut
    message: str | None
    last_confirmation_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CallbackDetail(CallbackOut):
    notifications: list[NotificationOut]


class CallbackList(BaseModel):
    items: list[CallbackOut]
    next_cursor: str | None
