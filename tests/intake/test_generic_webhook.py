"""The signed generic webhook: what is stored, what is forwarded, what is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import Inbound, IntakeOutbox, WebhookReceipt
from tests.support.signing import body_of, call_event, new_secret, signed_headers

URL = "/v1/webhooks/generic"


async def post_call(client: AsyncClient, secret: str, **overrides: Any) -> Any:
    body = body_of(call_event(**overrides))
    return await client.post(URL, content=body, headers=signed_headers(secret, body))


async def inbound_rows(sessions: async_sessionmaker[AsyncSession]) -> list[Inbound]:
    async with sessions() as session:
        return list((await session.scalars(select(Inbound))).all())


async def outbox_rows(sessions: async_sessionmaker[AsyncSession]) -> list[IntakeOutbox]:
    async with sessions() as session:
        return list((await session.scalars(select(IntakeOutbox).order_by(IntakeOutbox.id))).all())


async def test_missed_call_is_stored_and_forwarded_to_history_and_callback(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    event = call_event(call_id="call-1", **{"from": "040 123 4567"})
    body = body_of(event)

    response = await intake.post(URL, content=body, headers=signed_headers(webhook_secret, body))

    assert response.status_code == 202
    answer = response.json()
    assert answer["status"] == "accepted"
    [inbound] = await inbound_rows(sessions)
    assert inbound.id == answer["id"]
    assert inbound.body == body, "the raw bytes are kept exactly as received"
    assert inbound.phone == "+358401234567"
    forwards = await outbox_rows(sessions)
    assert [(row.destination, row.path) for row in forwards] == [
        ("history", "/v1/events"),
        ("callback", "/v1/callbacks"),
    ]
    history, callback = (row.payload for row in forwards)
    assert history["type"] == "missed_call"
    assert history["customer"] == {"phone": "+358401234567"}
    assert history["occurred_at"] == "2026-11-24T12:00:00Z"
    assert callback["phone"] == "+358401234567"
    assert callback["request_id"] == f"inbound:{answer['id']}"
    assert {row.ordering_key for row in forwards} == {"+358401234567"}


async def test_the_same_call_delivered_twice_is_one_missed_call(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await post_call(intake, webhook_secret, call_id="call-dup")
    # A provider retry: same call, new message id, new signature.
    second = await post_call(intake, webhook_secret, call_id="call-dup")

    assert first.status_code == second.status_code == 202
    assert second.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(await inbound_rows(sessions)) == 1
    assert len(await outbox_rows(sessions)) == 2


async def test_answered_call_is_recorded_on_the_timeline_without_a_callback(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await post_call(intake, webhook_secret, status="answered")

    assert response.status_code == 202
    assert response.json()["status"] == "recorded"
    history, answered = await outbox_rows(sessions)
    assert (history.destination, history.payload["type"]) == ("history", "call_answered")
    # The customer got through: callback completes an open callback for the number.
    assert (answered.destination, answered.path) == ("callback", "/v1/answered-calls")
    assert answered.payload["phone"] == "+358401234567"
    assert answered.payload["request_id"] == f"inbound:{response.json()['id']}"


@pytest.mark.parametrize("caller", ["anonymous", "", "+", "12", "not a number"])
async def test_withheld_or_unparseable_caller_is_recorded_without_a_callback(
    intake: AsyncClient,
    webhook_secret: str,
    sessions: async_sessionmaker[AsyncSession],
    caller: str,
) -> None:
    response = await post_call(intake, webhook_secret, **{"from": caller})

    assert response.status_code == 202
    assert response.json()["status"] == "recorded"
    [forward] = await outbox_rows(sessions)
    assert forward.destination == "history"
    assert forward.payload["type"] == "missed_call"
    assert forward.payload["data"]["caller_withheld"] is True


async def test_an_older_rotated_secret_still_verifies(
    intake: AsyncClient, intake_settings: Any
) -> None:
    older = intake_settings.webhook_secret_list()[0]
    response = await post_call(intake, older)
    assert response.status_code == 202


async def test_bad_signature_is_refused_and_nothing_is_stored(
    intake: AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await post_call(intake, new_secret())

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    assert await inbound_rows(sessions) == []


# Well past the 300 s tolerance: at 301 a second passing between signing and checking (a busy
# machine) made the stale case valid again.
@pytest.mark.parametrize("skew", [-330, 330])
async def test_stale_or_future_timestamp_is_refused(
    intake: AsyncClient, webhook_secret: str, skew: int
) -> None:
    body = body_of(call_event())
    headers = signed_headers(webhook_secret, body, timestamp=int(time.time()) + skew)
    response = await intake.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    assert "tolerance" in response.json()["detail"]


async def test_missing_signature_headers_are_refused(intake: AsyncClient) -> None:
    response = await intake.post(
        URL, content=body_of(call_event()), headers={"content-type": "application/json"}
    )
    assert response.status_code == 401


async def test_generic_webhooks_are_refused_when_no_secret_is_configured(
    settings_kwargs: dict[str, Any], clean_db: None
) -> None:
    from services.intake.app import create_app
    from services.intake.settings import IntakeSettings
    from tests.conftest import serve_asgi

    async for client in serve_asgi(create_app(IntakeSettings(**settings_kwargs))):
        response = await post_call(client, new_secret())
        assert response.status_code == 403
        assert "RINGBACK_WEBHOOK_SECRETS" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b'{"id": "x", "call_id": ', "application/json", 400, "not valid JSON"),
        (body_of(call_event(status="ringing")), "application/json", 422, "status"),
        (body_of(call_event(occurred_at="yesterday")), "application/json", 422, "occurred_at"),
        (body_of({"call_id": "c"}), "application/json", 422, "id"),
        (b"from=0401234567", "text/plain", 415, "application/json"),
    ],
)
async def test_authentic_but_unusable_payload_is_kept_with_the_reason(
    intake: AsyncClient,
    webhook_secret: str,
    sessions: async_sessionmaker[AsyncSession],
    body: bytes,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    headers = signed_headers(webhook_secret, body) | {"content-type": content_type}

    response = await intake.post(URL, content=body, headers=headers)

    assert response.status_code == status
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in problem["detail"]
    [kept] = await inbound_rows(sessions)
    assert kept.id == problem["inbound_id"]
    assert kept.status == "rejected"
    assert kept.body == body
    assert reason in (kept.reason or "")
    assert await outbox_rows(sessions) == []


async def test_oversized_body_gets_413_and_is_not_stored(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = body_of(call_event(metadata={"blob": "x" * 70_000}))
    response = await intake.post(URL, content=body, headers=signed_headers(webhook_secret, body))

    assert response.status_code == 413
    assert response.json()["title"] == "Payload Too Large"
    assert await inbound_rows(sessions) == []


async def test_streamed_oversized_body_gets_413(intake: AsyncClient, webhook_secret: str) -> None:
    body = body_of(call_event(metadata={"blob": "x" * 70_000}))

    async def chunks() -> Any:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    headers = signed_headers(webhook_secret, body)
    response = await intake.post(URL, content=chunks(), headers=headers)
    assert response.status_code == 413


async def test_inbound_count_metric_is_exposed(intake: AsyncClient, webhook_secret: str) -> None:
    await post_call(intake, webhook_secret)
    metrics = await intake.get("/metrics")
    assert 'ringback_intake_inbound_total{provider="generic",status="accepted"} 1.0' in metrics.text


async def test_row_counts_match_answers_under_concurrent_delivery(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    import asyncio

    # Ten calls, each delivered three times at once: ten missed calls, no more.
    events = [call_event(call_id=f"burst-{i}", **{"from": f"040 555 00{i:02d}"}) for i in range(10)]
    requests = [post_call(intake, webhook_secret, **event) for event in events for _ in range(3)]
    answers = await asyncio.gather(*requests)

    assert all(a.status_code == 202 for a in answers)
    assert sum(a.json()["status"] == "accepted" for a in answers) == 10
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Inbound)) == 10
        assert await session.scalar(select(func.count()).select_from(IntakeOutbox)) == 20


async def test_concurrent_redeliveries_all_answer_with_the_stored_call(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    import asyncio

    # One call at once under five webhook-ids, each of them sent twice: whichever commits
    # first, every answer and every receipt names the one stored row.
    body = body_of(call_event(call_id="race-1"))
    requests = [
        intake.post(URL, content=body, headers=signed_headers(webhook_secret, body, msg_id=m))
        for m in ("r0", "r1", "r2", "r3", "r4") * 2
    ]
    answers = await asyncio.gather(*requests)

    assert all(a.status_code == 202 for a in answers)
    [stored] = await inbound_rows(sessions)
    assert {a.json()["id"] for a in answers} == {stored.id}
    assert sorted(a.json()["status"] for a in answers) == ["accepted"] + ["duplicate"] * 9
    assert len(await outbox_rows(sessions)) == 2
    async with sessions() as session:
        receipts = (await session.execute(select(WebhookReceipt.inbound_id))).scalars().all()
    assert sorted(receipts) == [stored.id] * 5


async def test_what_the_telephony_system_knows_about_the_caller_is_forwarded(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    customer = {"email": "Maija@Example.FI", "name": "Maija Meikäläinen", "language": "sv"}
    response = await post_call(intake, webhook_secret, metadata={"customer": customer})

    assert response.status_code == 202
    history, callback = (row.payload for row in await outbox_rows(sessions))
    assert history["customer"] == {
        "phone": "+358401234567",
        "email": "maija@example.fi",
        "name": "Maija Meikäläinen",
    }
    assert (callback["email"], callback["language"]) == ("maija@example.fi", "sv")


async def test_a_malformed_known_caller_is_rejected_and_kept(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await post_call(intake, webhook_secret, metadata={"customer": {"email": "nope"}})

    assert response.status_code == 422
    assert "metadata.customer.email" in response.json()["detail"]
    [kept] = await inbound_rows(sessions)
    assert kept.status == "rejected"


async def test_a_replayed_webhook_id_is_a_duplicate_and_processed_once(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = body_of(call_event())
    headers = signed_headers(webhook_secret, body, msg_id="msg_replayed")

    first = await intake.post(URL, content=body, headers=headers)
    replay = await intake.post(URL, content=body, headers=headers)

    assert first.json()["status"] == "accepted"
    assert replay.status_code == 202
    assert replay.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(await inbound_rows(sessions)) == 1
    assert len(await outbox_rows(sessions)) == 2


async def test_a_replayed_webhook_id_with_another_signed_call_is_not_processed(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Same message id, a different (validly signed) body: the id is what was seen.
    one, two = body_of(call_event()), body_of(call_event())
    first = await intake.post(
        URL, content=one, headers=signed_headers(webhook_secret, one, msg_id="m1")
    )
    second = await intake.post(
        URL, content=two, headers=signed_headers(webhook_secret, two, msg_id="m1")
    )
    assert second.json() == {"id": first.json()["id"], "status": "duplicate"}
    assert len(await inbound_rows(sessions)) == 1


async def test_a_retry_of_a_rejected_message_is_not_stored_twice(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    body = body_of(call_event(status="ringing"))
    headers = signed_headers(webhook_secret, body, msg_id="msg_bad")
    first = await intake.post(URL, content=body, headers=headers)
    retry = await intake.post(URL, content=body, headers=headers)
    assert first.status_code == 422
    # Kept once; the sender may stop retrying, an operator sees and replays it.
    assert retry.json() == {"id": first.json()["inbound_id"], "status": "duplicate"}
    assert len(await inbound_rows(sessions)) == 1


async def test_a_stale_replay_is_refused_even_after_its_id_was_forgotten(
    intake: AsyncClient, webhook_secret: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from sqlalchemy import delete

    from services.intake.models import WebhookReceipt

    body = body_of(call_event())
    old = int(time.time()) - 400
    headers = signed_headers(webhook_secret, body, msg_id="msg_old", timestamp=old)
    async with sessions() as session:
        await session.execute(delete(WebhookReceipt))
        await session.commit()
    response = await intake.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    assert await inbound_rows(sessions) == []


async def test_housekeeping_forgets_ids_only_after_twice_the_tolerance(
    intake: AsyncClient,
    webhook_secret: str,
    intake_settings: Any,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from services.intake.models import WebhookReceipt
    from services.intake.relay import housekeeping
    from shared.db import utcnow

    await post_call(intake, webhook_secret)
    await post_call(intake, webhook_secret)
    async with sessions() as session:
        first = (await session.scalars(select(WebhookReceipt))).first()
        assert first is not None
        await session.execute(
            update(WebhookReceipt)
            .where(WebhookReceipt.webhook_id == first.webhook_id)
            .values(received_at=utcnow() - timedelta(seconds=601))
        )
        await session.commit()
    counts = await housekeeping(intake_settings, sessions)
    assert counts["receipts"] == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookReceipt)) == 1
