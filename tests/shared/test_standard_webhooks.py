"""Our Standard Webhooks verifier agrees with the reference implementation."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from shared.standard_webhooks import SignatureError, sign, verify
from tests.support.signing import new_secret

SECRET = new_secret()


def headers(msg_id: str, stamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


@settings(max_examples=50)
@given(
    # The reference verifier parses the body as JSON after checking it, so bodies are JSON.
    body=st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=5).map(json.dumps),
    msg_id=st.text(alphabet="abcdef0123456789_", min_size=1, max_size=40),
)
def test_reference_signatures_verify_and_ours_verify_with_the_reference(
    body: str, msg_id: str
) -> None:
    stamp = int(time.time())
    theirs = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(stamp, tz=UTC), body)
    assert (
        verify(secrets=[SECRET], headers=headers(msg_id, stamp, theirs), body=body.encode())
        == msg_id
    )

    ours = sign(SECRET, msg_id, stamp, body.encode())
    assert ours == theirs
    Webhook(SECRET).verify(body, headers(msg_id, stamp, ours))


def test_any_one_of_several_signatures_is_enough() -> None:
    stamp = int(time.time())
    good = sign(SECRET, "m1", stamp, b"{}")
    other = sign(new_secret(), "m1", stamp, b"{}")
    assert (
        verify(secrets=[SECRET], headers=headers("m1", stamp, f"{other} {good}"), body=b"{}")
        == "m1"
    )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, b: (h | {"webhook-id": "other"}, b), "matches"),
        (lambda h, b: (h, b + b" "), "matches"),
        (lambda h, b: (h | {"webhook-signature": "v1,AAAA"}, b), "matches"),
        (lambda h, b: (h | {"webhook-signature": "v2,abc"}, b), "matches"),
        (lambda h, b: (h | {"webhook-timestamp": "soon"}, b), "unix time"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
    ],
)
def test_tampering_is_detected(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    stamp = int(time.time())
    body = b'{"call_id": "c1"}'
    good = headers("m1", stamp, sign(SECRET, "m1", stamp, body))
    bad_headers, bad_body = mutate(good, body)
    with pytest.raises(SignatureError, match=reason):
        verify(secrets=[SECRET], headers=bad_headers, body=bad_body)


def test_timestamps_exactly_at_the_tolerance_pass_and_beyond_fail() -> None:
    now = 1_800_000_000
    for skew, ok in ((-300, True), (300, True), (-301, False), (301, False)):
        stamp = now + skew
        h = headers("m", stamp, sign(SECRET, "m", stamp, b"x"))
        if ok:
            verify(secrets=[SECRET], headers=h, body=b"x", now=now)
        else:
            with pytest.raises(SignatureError, match="tolerance"):
                verify(secrets=[SECRET], headers=h, body=b"x", now=now)
