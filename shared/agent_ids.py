"""What an agent id looks like: one rule for the key store, the CLI and callback's API.

Agent ids come from the team's own directory (`anna`, `anna.k`, `anna@example.com`), so the rule
is loose, but it keeps out whitespace, slashes and control characters, which would break a URL
path (`/v1/agents/{agent_id}`) or a log line.
"""

from __future__ import annotations

import re

# callback stores agent ids in String(64) columns.
AGENT_ID_MAX_LENGTH = 64
# Anchored, so it means the same as a pydantic `pattern=` (which searches) and as `fullmatch`.
# v1's claims took exactly these (`sip:anna` and `_anna` among them), so v2 keeps them.
AGENT_ID_PATTERN = rf"^[A-Za-z0-9_.@:\-]{{1,{AGENT_ID_MAX_LENGTH}}}$"
AGENT_ID_RULE = f"1-{AGENT_ID_MAX_LENGTH} characters: letters, digits and . _ @ : -"

_AGENT_ID = re.compile(AGENT_ID_PATTERN)


def is_agent_id(value: str) -> bool:
    """Whether `value` is a well-formed agent id."""
    # fullmatch: `$` alone would let a trailing newline through.
    return _AGENT_ID.fullmatch(value) is not None
