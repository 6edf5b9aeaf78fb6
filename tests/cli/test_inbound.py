"""`ringback inbound list|replay` against a real intake served over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import repository
from tests.cli.conftest import RunCli
from tests.support.live import LiveServer
from tests.support.signing import body_of, call_event, signed_headers

MakeKey = Callable[..., Awaitable[str]]


async def post_call(server: LiveServer, secret: str, **overrides: object) -> httpx.Response:
    body = body_of(call_event(**overrides))
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.post(
            "/v1/webhooks/generic", content=body, headers=signed_headers(secret, body)
        )


def env_for(server: LiveServer, key: str) -> dict[str, str]:
    return {"RINGBACK_INTAKE_URL": server.url, "RINGBACK_ADMIN_API_KEY": key}


async def test_list_shows_rejected_records_as_a_table(
    intake_server: LiveServer, cli_webhook_secret: str, make_key: MakeKey, run_cli: RunCli
) -> None:
    rejected = await post_call(intake_server, cli_webhook_secret, status="ringing")
    assert rejected.status_code == 422
    rejected_id = rejected.json()["inbound_id"]
    accepted = await post_call(intake_server, cli_webhook_secret)
    assert accepted.status_code == 202
    env = env_for(intake_server, await make_key("admin"))

    run = await run_cli("inbound", "list", "--status", "rejected", env=env)

    assert run.code == 0, run.err
    header, *rows = run.out.splitlines()
    assert header.split() == ["ID", "RECEIVED", "(UTC)", "PROVIDER", "KIND", "STATUS", "REASON"]
    assert len(rows) == 1
    assert rows[0].startswith(rejected_id)
    assert " generic " in rows[0]
    assert " rejected " in rows[0]
    assert "status" in rows[0]  # the reason names the field that did not fit
    assert accepted.json()["id"] not in run.out

    everything = await run_cli("inbound", "list", "--provider", "generic", "--limit", "1", env=env)
    assert everything.code == 0, everything.err
    lines = everything.out.splitlines()
    assert len(lines) == 3  # header, the newest record, and how to get the next page
    assert lines[1].startswith(accepted.json()["id"])
    assert lines[2].startswith("more: ringback inbound list ... --cursor ")

    nothing = await run_cli("inbound", "list", "--provider", "twilio", env=env)
    assert (nothing.code, nothing.out) == (0, "no inbound records match\n")


async def test_replay_records_a_rejected_record_that_parses_now(
    intake_server: LiveServer,
    make_key: MakeKey,
    run_cli: RunCli,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Rejected by an older version of the code; today's parser accepts it.
    async with sessions() as session:
        inbound_id = await repository.insert_inbound(
            session,
            {
                "provider": "generic",
                "kind": "call",
                "status": "rejected",
                "reason": "older code refused this",
                "content_type": "application/json",
                "headers": {"content-type": "application/json"},
                "body": body_of(call_event(call_id="call-cli-replayed")),
                "summary": {},
            },
        )
        await session.commit()
    key = await make_key("admin")

    run = await run_cli("inbound", "replay", inbound_id, env=env_for(intake_server, key))

    assert run.code == 0, run.err
    first, second = run.out.splitlines()
    assert first == f"{inbound_id}: replayed"
    assert second.startswith("recorded as ")
    assert second.endswith(": accepted")
    async with httpx.AsyncClient(base_url=intake_server.url) as client:
        detail = await client.get(
            f"/v1/inbound/{inbound_id}", headers={"authorization": f"Bearer {key}"}
        )
    assert detail.json()["status"] == "replayed"
    assert detail.json()["summary"]["replayed_as"] == second.split()[2].rstrip(":")

    again = await run_cli("inbound", "replay", inbound_id, env=env_for(intake_server, key))
    assert again.code == 1
    assert again.out == ""
    assert again.err.startswith("error: 409 Conflict: Only rejected records can be replayed")


async def test_replay_of_what_still_does_not_parse_says_why(
    intake_server: LiveServer, cli_webhook_secret: str, make_key: MakeKey, run_cli: RunCli
) -> None:
    rejected = await post_call(intake_server, cli_webhook_secret, status="ringing")
    env = env_for(intake_server, await make_key("admin"))

    run = await run_cli("inbound", "replay", rejected.json()["inbound_id"], env=env)

    assert run.code == 1
    assert run.err.startswith("error: 422 Unprocessable Content: It still does not parse")
    missing = await run_cli("inbound", "replay", "no-such-record", env=env)
    assert (missing.code, missing.err) == (
        1,
        "error: 404 Not Found: No inbound record has this id.\n",
    )


async def test_keys_without_admin_scope_and_a_missing_key_are_refused_plainly(
    intake_server: LiveServer, make_key: MakeKey, run_cli: RunCli
) -> None:
    writer = await make_key("intake:write")
    refused = await run_cli("inbound", "list", env=env_for(intake_server, writer))
    assert refused.code == 1
    assert refused.err.startswith("error: 403 Forbidden")

    no_key = await run_cli("inbound", "list", env={"RINGBACK_INTAKE_URL": intake_server.url})
    assert no_key.code == 2
    assert "RINGBACK_ADMIN_API_KEY" in no_key.err

    # --api-key and --url win over the environment.
    admin = await make_key("admin")
    given = await run_cli("inbound", "list", "--url", intake_server.url, "--api-key", admin, env={})
    assert (given.code, given.out) == (0, "no inbound records match\n")


async def test_an_unreachable_intake_is_named(run_cli: RunCli) -> None:
    env = {"RINGBACK_INTAKE_URL": "http://127.0.0.1:9", "RINGBACK_ADMIN_API_KEY": "rb_x"}
    run = await run_cli("inbound", "list", env=env)
    assert run.code == 1
    assert run.err.startswith("error: cannot reach intake at http://127.0.0.1:9")
