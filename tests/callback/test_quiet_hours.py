"""SMS quiet hours (§13): reminders, "we tried", surveys and at-risk offers wait them out;
a confirmation never does. A queue that sets none keeps the site's 21:00-08:00."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.callback import notify, queues
from services.callback.jobs import ArqNotificationQueue
from services.callback.models import Callback, NotificationKind, Queue
from services.callback.settings import CallbackSettings
from services.callback.templates import Confirmation
from shared.db import commit
from shared.service_app import create_redis
from tests.callback.conftest import (
    ConfirmOwed,
    InsertCallbacks,
    ReadNotificationsFn,
    RunWorker,
)
from tests.callback.helpers import callback_body, claim, put_queue

HELSINKI = ZoneInfo("Europe/Helsinki")


def around_now(zone: ZoneInfo = HELSINKI) -> tuple[str, datetime]:
    """Quiet hours from an hour ago to two hours ahead on `zone`'s clock, and their end."""
    local = datetime.now(zone)
    start = (local - timedelta(hours=1)).strftime("%H:00")
    end = (local + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    return f"{start}-{end.strftime('%H:00')}", end.astimezone(UTC)


def test_a_queue_that_sets_nothing_keeps_the_documented_default(
    settings_kwargs: dict[str, Any],
) -> None:
    site = CallbackSettings(**{**settings_kwargs, "sms_quiet_hours": "21:00-08:00"})
    assert CallbackSettings.model_fields["sms_quiet_hours"].default == "21:00-08:00"

    rules = queues.rules_of(None, site)

    assert rules.sms_quiet_hours == (time(21), time(8))
    late = datetime(2026, 12, 7, 22, 30, tzinfo=HELSINKI)
    assert rules.sms_send_at(late) == datetime(2026, 12, 8, 8, 0, tzinfo=HELSINKI)
    early = datetime(2026, 12, 8, 6, 0, tzinfo=HELSINKI)
    assert rules.sms_send_at(early) == datetime(2026, 12, 8, 8, 0, tzinfo=HELSINKI)
    day = datetime(2026, 12, 8, 12, 0, tzinfo=HELSINKI)
    assert rules.sms_send_at(day) == day


def test_off_means_none_and_a_queue_may_set_its_own_or_none(
    settings_kwargs: dict[str, Any],
) -> None:
    off = CallbackSettings(**{**settings_kwargs, "sms_quiet_hours": "off"})
    site = CallbackSettings(**{**settings_kwargs, "sms_quiet_hours": "21:00-08:00"})
    own = Queue(key="night", name="Night", config={
        "sms_quiet_hours": {"start": "22:00", "end": "07:00"}})  # fmt: skip
    none = Queue(key="any", name="Any", config={
        "sms_quiet_hours": {"start": "00:00", "end": "00:00"}})  # fmt: skip

    assert queues.rules_of(None, off).sms_quiet_hours is None
    assert queues.rules_of(own, site).sms_quiet_hours == (time(22), time(7))
    assert queues.rules_of(none, site).sms_quiet_hours is None


@pytest.mark.parametrize("value", ["21-08", "25:00-08:00", "21:00", "late"])
def test_a_malformed_site_default_is_refused(settings_kwargs: dict[str, Any], value: str) -> None:
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        CallbackSettings(**{**settings_kwargs, "sms_quiet_hours": value})


@pytest.fixture
def quiet_now() -> tuple[str, datetime]:
    return around_now()


@pytest.fixture
def settings(settings: CallbackSettings, quiet_now: tuple[str, datetime]) -> CallbackSettings:
    # The site's quiet hours, now: the queues in these tests set none of their own.
    return settings.model_copy(update={"sms_quiet_hours": quiet_now[0]})


async def test_we_tried_waits_for_the_end_of_the_site_quiet_hours(
    client: AsyncClient,
    auth: dict[str, str],
    insert_callbacks: InsertCallbacks,
    read_notifications: ReadNotificationsFn,
    run_worker: RunWorker,
    quiet_now: tuple[str, datetime],
) -> None:
    (callback_id,) = await insert_callbacks(1)
    assert (await claim(client, auth, "anna")).json()["id"] == callback_id
    answer = await client.post(
        f"/v1/callbacks/{callback_id}/attempts",
        json={"agent_id": "anna", "outcome": "no_answer"},
        headers=auth,
    )
    assert answer.status_code == 201, answer.text
    await run_worker()

    (tried,) = [n for n in await read_notifications(callback_id) if n.kind == "tried"]
    assert (tried.channel, tried.status) == ("sms", "queued")
    assert tried.next_attempt_at == quiet_now[1]


async def test_a_confirmation_goes_at_once_inside_quiet_hours(
    client: AsyncClient,
    auth: dict[str, str],
    admin: dict[str, str],
    confirm_owed: ConfirmOwed,
    run_worker: RunWorker,
    read_notifications: ReadNotificationsFn,
) -> None:
    await put_queue(client, admin, "night", timezone="Europe/Helsinki")
    created = await client.post("/v1/callbacks", json=callback_body(queue="night"), headers=auth)
    assert created.status_code == 201, created.text
    await confirm_owed()
    await run_worker()

    sent = {n.channel: n for n in await read_notifications(created.json()["id"])}
    assert (sent["sms"].kind, sent["sms"].status) == ("confirmation", "sent")
    assert sent["email"].status == "sent"


async def test_each_kind_waits_or_not_as_the_rule_says(
    insert_callbacks: InsertCallbacks,
    sessions: async_sessionmaker[AsyncSession],
    settings: CallbackSettings,
    quiet_now: tuple[str, datetime],
) -> None:
    (callback_id,) = await insert_callbacks(1)
    now = datetime.now(UTC)
    text = Confirmation(sms="Hei!", email_subject="Hei", email_body="Hei!")
    kinds = [
        NotificationKind.CONFIRMATION,
        NotificationKind.REMINDER,
        NotificationKind.TRIED,
        NotificationKind.SURVEY,
        NotificationKind.AT_RISK_OFFER,
        NotificationKind.CANCELLED,
    ]
    redis = create_redis(settings)
    try:
        async with sessions() as session:
            callback = await session.get(Callback, callback_id)
            assert callback is not None
            rows = await notify.send(
                session,
                ArqNotificationQueue(redis),
                settings=settings,
                callback=callback,
                messages=[
                    notify.Message(kind, f"{kind}:{callback_id}", text, frozenset({notify._SMS}))
                    for kind in kinds
                ],
                now=now,
            )
            await commit(session)
    finally:
        await redis.aclose(close_connection_pool=True)

    held = {row.kind: row.next_attempt_at == quiet_now[1] for row in rows}
    assert held == {
        "confirmation": False,
        "reminder": True,
        "tried": True,
        "survey": True,
        "at_risk_offer": True,
        "cancelled": False,
    }
