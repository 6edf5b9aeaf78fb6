"""Every ringback process started for real on loopback, as an operator would run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.infra import ROOT, free_port

SERVICES = ("intake", "callback", "history")


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return self.env[f"RINGBACK_{service.upper()}_URL"]

    def start(self, name: str) -> None:
        argv = {
            "worker": ["worker"],
            "relay": ["intake-relay"],
        }.get(name, ["serve", name])
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", *argv],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if name in SERVICES:
            self.wait_ready(name)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def own_url(self, service: str) -> str:
        """This process's own address (`url` may be a load balancer in front of several)."""
        return f"http://127.0.0.1:{self.env[f'RINGBACK_{service.upper()}_PORT']}"

    def wait_ready(self, service: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[service]
            if process.poll() is not None:
                raise AssertionError(f"{service} exited early:\n{self.tail(service)}")
            try:
                if httpx.get(f"{self.own_url(service)}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{service} not ready in {timeout}s:\n{self.tail(service)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def delivering_to(
    gateway: SmsGateway, inbox: SmtpInbox, sink: Path, *, sender: str = "asiakaspalvelu@example.fi"
) -> dict[str, str]:
    """The settings that send SMS to `gateway` (generic JSON) and email to `inbox` (SMTP)."""
    return {
        "RINGBACK_SMS_PROVIDER": "http",
        "RINGBACK_SMS_HTTP_URL": f"{gateway.url}/v1/messages",
        "RINGBACK_EMAIL_PROVIDER": "smtp",
        "RINGBACK_SMTP_HOST": inbox.host,
        "RINGBACK_SMTP_PORT": str(inbox.port),
        "RINGBACK_SMTP_STARTTLS": "false",
        "RINGBACK_EMAIL_FROM": sender,
        "RINGBACK_SINK_DIR": str(sink),
    }


@contextmanager
def running_stack(
    base_env: dict[str, str], logs: Path, extra: dict[str, str], names: tuple[str, ...]
) -> Iterator[Stack]:
    """Start `names` (services, `worker`, `relay`) with this run's infrastructure."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RINGBACK_")}
    env.update(base_env)
    for service in SERVICES:
        port = free_port()
        env[f"RINGBACK_{service.upper()}_PORT"] = str(port)
        env[f"RINGBACK_{service.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env["RINGBACK_LOG_LEVEL"] = "INFO"
    env["RINGBACK_PUBLIC_BASE_URL"] = env["RINGBACK_INTAKE_URL"]
    env.update(extra)
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, logs=logs)
    try:
        for name in names:
            stack.start(name)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)
