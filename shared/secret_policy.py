"""What production accepts as a secret: never an example value, and enough randomness to sign.

The example manifests ship values like `REPLACE-with-a-long-random-string`; a deployment that
copies one, or types a short word, would sign self-service links and authenticate services
with something an attacker can guess. Production refuses both at start, naming the variable.
"""

from __future__ import annotations

import math
import string
from urllib.parse import urlsplit

# Words that mark a value as copied from an example, wherever they appear in it.
_PLACEHOLDER_MARKERS = ("replace", "changeme", "change-me", "change_me", "example", "placeholder")
_PLACEHOLDER_VALUES = {"", "secret", "password", "test", "dev", "development", "xxx", "todo"}
# 32 bytes: what HMAC-SHA256 keys and `secrets.token_urlsafe(32)` carry.
SIGNING_MIN_BITS = 256
# A long run of few characters ("aaaa...") is long without being random.
_MIN_DISTINCT_CHARACTERS = 12
HOW_TO_GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_placeholder(value: str) -> bool:
    folded = value.strip().lower()
    return folded in _PLACEHOLDER_VALUES or any(m in folded for m in _PLACEHOLDER_MARKERS)


def entropy_bits(value: str) -> float:
    """At most this much randomness: the length times log2 of the alphabet it draws from.

    An upper bound (a random-looking string may still be guessable), which is the right side
    to err on for refusing: anything under the bar is certainly too weak.
    """
    if len(set(value)) < _MIN_DISTINCT_CHARACTERS:
        return 0.0
    alphabet = 0
    for group in (string.ascii_lowercase, string.ascii_uppercase, string.digits):
        if any(c in group for c in value):
            alphabet += len(group)
    if any(not c.isascii() or not c.isalnum() for c in value):
        alphabet += 32
    return len(value) * math.log2(alphabet)


def refusal(variable: str, value: str | None, *, signing: bool) -> str | None:
    """Why `value` cannot be `variable` in production, or None when it can."""
    if value is None or is_placeholder(value):
        return f"{variable} must be set to a real secret in production, not an example value"
    if signing and entropy_bits(value) < SIGNING_MIN_BITS:
        return (
            f"{variable} is too weak to sign with in production: it needs at least 32 random "
            f"bytes; generate one with `{HOW_TO_GENERATE}`"
        )
    return None


def url_password_refusal(variable: str, url: str | None) -> str | None:
    """A database or Redis URL whose password is still the example's."""
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None  # not a URL we can read: the driver will say so, naming it
    if password is not None and is_placeholder(password):
        return f"{variable} still has the example password; set the real one"
    return None
