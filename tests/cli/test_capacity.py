"""`ringback capacity import|show` against a real callback served over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from services.cli.capacity_csv import CsvError, parse_capacity_csv
from tests.cli.conftest import RunCli
from tests.support.infra import ROOT
from tests.support.live import LiveServer

MakeKey = Callable[..., Awaitable[str]]

PLAN_CSV = """\
# Helsinki service desk, winter 2026
day,from,to,agents
mon,08:00,12:00,3
mon,12:00,16:00,2
tue,08:00,11:30,2
tue,13:00,16:00,2

2026-12-24,09:00,12:00,1
2026-12-25,closed,,
"""


async def stored_plan(server: LiveServer, key: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.get("/v1/capacity", headers={"authorization": f"Bearer {key}"})


async def test_import_stores_the_plan_the_csv_describes(
    callback_server: LiveServer, make_key: MakeKey, run_cli: RunCli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text(PLAN_CSV)
    key = await make_key("admin")
    env = {"RINGBACK_CALLBACK_URL": callback_server.url, "RINGBACK_ADMIN_API_KEY": key}

    run = await run_cli(
        "capacity", "import", str(csv_file), "--timezone", "Europe/Stockholm",
        "--slot-minutes", "30", "--per-agent", "2", env=env,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        "capacity plan: Europe/Stockholm, 30-minute slots, 2 callbacks per agent per slot",
        "  mon         08:00-12:00 3 agents, 12:00-16:00 2 agents",
        "  tue         08:00-11:30 2 agents, 13:00-16:00 2 agents",
        "  wed         closed",
        "  thu         closed",
        "  fri         closed",
        "  sat         closed",
        "  sun         closed",
        "  2026-12-24  09:00-12:00 1 agent",
        "  2026-12-25  closed",
        # Monday 8 slots x 3 + 8 x 2, Tuesday 13 slots x 2; two callbacks per agent and slot.
        "bookable callbacks in a normal week: 132",
    ]
    plan = (await stored_plan(callback_server, key)).json()
    assert plan["timezone"] == "Europe/Stockholm"
    assert plan["slot_minutes"] == 30
    assert plan["callbacks_per_agent_per_slot"] == 2
    assert plan["business_hours"] == {
        "mon": [{"start": "08:00", "end": "16:00"}],
        "tue": [{"start": "08:00", "end": "11:30"}, {"start": "13:00", "end": "16:00"}],
    }
    assert plan["agents"]["mon"] == {str(h): 3 if h < 12 else 2 for h in range(8, 16)}
    assert plan["date_overrides"] == {
        "2026-12-24": {
            "business_hours": [{"start": "09:00", "end": "12:00"}],
            "agents": {"9": 1, "10": 1, "11": 1},
        }
    }
    assert plan["closed_dates"] == ["2026-12-25"]

    shown = await run_cli("capacity", "show", env=env)
    assert (shown.code, shown.out) == (0, run.out)


async def test_dry_run_prints_the_body_and_sends_nothing(
    callback_server: LiveServer, make_key: MakeKey, run_cli: RunCli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text(PLAN_CSV)
    key = await make_key("admin")
    env = {"RINGBACK_CALLBACK_URL": callback_server.url, "RINGBACK_ADMIN_API_KEY": key}

    run = await run_cli("capacity", "import", str(csv_file), "--dry-run", env=env)

    assert run.code == 0, run.err
    body_text, _, summary = run.out.partition("\n\n")
    body = json.loads(body_text)
    assert body["timezone"] == "Europe/Helsinki"
    assert body["slot_minutes"] == 15
    assert body["closed_dates"] == ["2026-12-25"]
    assert summary.splitlines()[-1] == "dry run: nothing was sent"
    assert (await stored_plan(callback_server, key)).status_code == 404


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("mon,08:00,12:00,3\nmon,11:00,13:00,2\n", "line 3: mon: these hours overlap those on"),
        ("mon,08:00,12:00,3\nfunday,08:00,12:00,3\n", "line 3: day 'funday' is neither"),
        ("mon,8,12,3\n", "line 2: from '8' is not a time as HH:MM"),
        ("mon,08:10,12:00,3\n", "line 2: 08:10-12:00 must start and end on a 15-minute slot"),
        ("mon,12:00,08:00,3\n", "line 2: the hours end (08:00) before they start (12:00)"),
        ("mon,08:00,12:00,many\n", "line 2: agents 'many' is not a whole number"),
        ("mon,08:00,12:30,3\nmon,12:30,13:00,2\n", "line 3: mon 12:00-13:00 has 3 agents on"),
        ("2026-12-25,closed,,\n2026-12-25,08:00,12:00,1\n", "line 3: 2026-12-25 has hours here"),
        ("mon,08:00,12:00\n", "line 2: give day, from, to and agents"),
    ],
)  # fmt: skip
async def test_mistakes_in_the_csv_name_their_line(
    run_cli: RunCli, tmp_path: Path, rows: str, message: str
) -> None:
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text("day,from,to,agents\n" + rows)

    run = await run_cli("capacity", "import", str(csv_file), "--dry-run")

    assert run.code == 2
    assert run.out == ""
    assert run.err.startswith(f"error: {csv_file}: {message}")


def test_a_file_without_the_header_is_refused() -> None:
    with pytest.raises(CsvError, match="line 1: the first row must be the header"):
        parse_capacity_csv("mon,08:00,12:00,3\n", timezone="UTC", slot_minutes=15, per_agent=1)


async def test_the_plan_model_rules_are_checked_before_sending(
    run_cli: RunCli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text(PLAN_CSV)
    run = await run_cli("capacity", "import", str(csv_file), "--timezone", "Mars/Olympus")
    assert run.code == 2
    assert run.err.startswith("error: the plan is not valid: timezone:")
    assert "not an IANA time zone" in run.err


async def test_the_api_refusing_the_plan_shows_the_problem(
    callback_server: LiveServer, make_key: MakeKey, run_cli: RunCli, tmp_path: Path
) -> None:
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text(PLAN_CSV)
    reader = await make_key("callbacks:read")
    env = {"RINGBACK_CALLBACK_URL": callback_server.url, "RINGBACK_ADMIN_API_KEY": reader}

    run = await run_cli("capacity", "import", str(csv_file), env=env)

    assert run.code == 1
    assert run.err.startswith("error: 403 Forbidden:")


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`ringback capacity import plan.csv --dry-run | head`: ringback leaves quietly with head."""
    csv_file = tmp_path / "plan.csv"
    csv_file.write_text(PLAN_CSV)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGBACK_")}
    env["RINGBACK_DATA_DIR"] = str(tmp_path / "data")
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli.main",
                "capacity",
                "import",
                str(csv_file),
                "--dry-run",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)

    assert done.stderr.decode() == ""
    # What a shell reports for a program whose reader went away (128 + SIGPIPE).
    assert done.returncode == 141
