"""`run_worker(settings)` as `ringback worker` runs it: a real process, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from httpx import AsyncClient

from services.callback.models import Notification
from tests.callback.helpers import callback_body
from tests.support.infra import ROOT, free_port

_PROGRAM = (
    "from services.callback.settings import CallbackSettings\n"
    "from services.callback.worker import run_worker\n"
    "run_worker(CallbackSettings())\n"
)


async def test_worker_process_delivers_and_stops_cleanly_on_sigterm(
    client: AsyncClient,
    auth: dict[str, str],
    base_env: dict[str, str],
    tmp_path: Path,
    read_notifications: Callable[..., Awaitable[list[Notification]]],
) -> None:
    created = await client.post("/v1/callbacks", json=callback_body(), headers=auth)
    callback_id = created.json()["id"]
    env = {
        **base_env,
        "PATH": "/usr/bin:/bin",
        "RINGBACK_SMS_PROVIDER": "file",
        "RINGBACK_EMAIL_PROVIDER": "file",
        "RINGBACK_SINK_DIR": str(tmp_path / "sink"),
        # The relay runs too; history is not up, so its deliveries wait (and must not block exit).
        "RINGBACK_HISTORY_URL": f"http://127.0.0.1:{free_port()}",
        "RINGBACK_WORKER_SHUTDOWN_GRACE_SECONDS": "2",
        "RINGBACK_WORKER_METRICS_PORT": str(metrics_port := free_port()),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PROGRAM,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        statuses: list[str] = []
        while time.monotonic() < deadline:
            statuses = [n.status for n in await read_notifications(callback_id)]
            if statuses == ["sent", "sent"]:
                break
            await asyncio.sleep(0.1)
        assert statuses == ["sent", "sent"]
        async with AsyncClient() as scraper:
            metrics = (await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        # What an operator's dashboard and the worker autoscaler read.
        for channel in ("sms", "email"):
            labels = f'channel="{channel}",provider="file",result="sent"'
            assert f"ringback_notifications_total{{{labels}}} 1.0" in metrics
        assert "ringback_queue_depth " in metrics
        assert 'ringback_outbox_backlog{source="callback"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "Traceback" not in stderr.decode()
    assert len(list((tmp_path / "sink" / "sms").glob("*.txt"))) == 1
    assert len(list((tmp_path / "sink" / "email").glob("*.eml"))) == 1
