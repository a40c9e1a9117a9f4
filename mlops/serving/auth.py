"""Optional API-key check: on when the configured environment variable is set."""

from __future__ import annotations

import hmac
import os

API_KEY_HEADER = "X-API-Key"


def configured_key(env_name: str) -> str | None:
    """The API key from the environment, or None when auth is off (unset or empty)."""
    return os.environ.get(env_name) or None


def key_matches(expected: str, provided: str | None) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess was right."""
    if provided is None:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())
