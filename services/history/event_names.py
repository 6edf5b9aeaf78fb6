"""The one table from timeline event types to the event names webhooks carry (DESIGN §12)."""

from __future__ import annotations

from typing import Final

from shared.vocabulary import EventType, WebhookEventType

# Timeline type -> webhook event name. A type not here (a missed call, a note, an
# integration's `x-` type) is not sent. `callback_attempted` is recorded for final
# attempts only (a dial's proposed attempt is not), so `callback.attempted` means one.
EVENT_NAMES: Final[dict[str, WebhookEventType]] = {
    EventType.CALLBACK_CREATED: WebhookEventType.CALLBACK_CREATED,
    EventType.CALLBACK_SCHEDULED: WebhookEventType.CALLBACK_SCHEDULED,
    EventType.CALLBACK_CLAIMED: WebhookEventType.CALLBACK_CLAIMED,
    EventType.CALLBACK_ATTEMPTED: WebhookEventType.CALLBACK_ATTEMPTED,
    EventType.CALLBACK_COMPLETED: WebhookEventType.CALLBACK_COMPLETED,
    EventType.CALLBACK_FAILED: WebhookEventType.CALLBACK_FAILED,
    EventType.CALLBACK_CANCELLED: WebhookEventType.CALLBACK_CANCELLED,
    EventType.CALLBACK_EXPIRED: WebhookEventType.CALLBACK_EXPIRED,
    EventType.CALLBACK_MERGED: WebhookEventType.CALLBACK_MERGED,
    EventType.CALLBACK_AT_RISK: WebhookEventType.CALLBACK_AT_RISK,
    EventType.CALLBACK_BACK_ON_TRACK: WebhookEventType.CALLBACK_BACK_ON_TRACK,
    EventType.NOTIFICATION_SENT: WebhookEventType.NOTIFICATION_SENT,
    EventType.NOTIFICATION_FAILED: WebhookEventType.NOTIFICATION_FAILED,
    EventType.VOICEMAIL: WebhookEventType.VOICEMAIL_RECEIVED,
    EventType.SURVEY_ANSWERED: WebhookEventType.SURVEY_ANSWERED,
    EventType.CUSTOMER_MERGED: WebhookEventType.CUSTOMER_MERGED,
    EventType.CUSTOMER_ERASED: WebhookEventType.CUSTOMER_ERASED,
}

# What an endpoint subscribing to everything lists.
ALL_EVENTS: Final = "*"
