"""Optional API-key check: on when MLOPS_API_KEY is set (read by Settings, never by a name from config)."""

from __future__ import annotations

import hmac

API_KEY_HEADER = "X-API-Key"


def key_matches(expected: str, provided: str | None) -> bool:
    """Constant-time comparison, so response timing does not leak how much of a guess was right."""
    if provided is None:
        return False
    return hmac.compare_digest(expected.encode(), provided.encode())
