"""arq job serialization: JSON, never pickle, so a job is data and not code."""

from __future__ import annotations

from typing import Any

from shared.jsonutil import dumps, loads


def job_serializer(value: dict[str, Any]) -> bytes:
    return dumps(value)


def job_deserializer(data: bytes) -> dict[str, Any]:
    value = loads(data)
    assert isinstance(value, dict)
    return value
