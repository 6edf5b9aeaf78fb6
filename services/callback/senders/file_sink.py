"""The development sink: one readable file per message, so `make run` needs no provider."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from services.callback.senders.base import OutgoingEmail, OutgoingSms, SendResult
from services.callback.senders.email_smtp import build_message


def _write_atomically(path: Path, data: bytes) -> None:
    # A re-send overwrites the same file: one file per notification, never a half-written one.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class FileSmsSender:
    """Writes `<sink_dir>/sms/<notification id>.txt`."""

    name = "file"

    def __init__(self, *, directory: Path, sender: str | None = None) -> None:
        self._directory = directory / "sms"
        self._sender = sender

    async def send_sms(self, message: OutgoingSms) -> SendResult:
        lines = [f"To: {message.to}"]
        sender = message.sender or self._sender
        if sender:
            lines.append(f"From: {sender}")
        lines += [f"Reference: {message.notification_id}", "", message.text, ""]
        path = self._directory / f"{message.notification_id}.txt"
        await asyncio.to_thread(_write_atomically, path, "\n".join(lines).encode("utf-8"))
        return SendResult(provider=self.name, message_id=str(path))


class FileEmailSender:
    """Writes `<sink_dir>/email/<notification id>.eml`, a message any mail client opens."""

    name = "file"

    def __init__(self, *, directory: Path, sender: str) -> None:
        self._directory = directory / "email"
        self._sender = sender

    async def send_email(self, message: OutgoingEmail) -> SendResult:
        email = build_message(message, sender=self._sender)
        path = self._directory / f"{message.notification_id}.eml"
        await asyncio.to_thread(_write_atomically, path, email.as_bytes())
        return SendResult(provider=self.name, message_id=str(email["Message-ID"]))
