"""Which model answers a request: champion, or the canary for a sticky share of callers."""

from __future__ import annotations

import hashlib
import random
from typing import Literal

from mlops.serving.metrics import ROUTE_CANARY, ROUTE_CHAMPION

Mode = Literal["champion", "canary", "shadow"]
_SCALE = float(2**64)


def sticky_point(key: str) -> float:
    """Map a caller key to a fixed point in [0, 1): the same key lands on the same side."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


class Router:
    """Chooses the route of one request; shadow scoring is decided separately (`shadows`)."""

    def __init__(self, mode: Mode, canary_share: float, rng: random.Random | None = None) -> None:
        self.mode = mode
        self.canary_share = canary_share
        self._rng = rng or random.Random()

    @property
    def shadows(self) -> bool:
        """In shadow mode the canary scores every request silently; only the champion answers."""
        return self.mode == "shadow"

    def choose(self, key: str | None, canary_available: bool) -> str:
        """ROUTE_CANARY for `canary_share` of keys (random per request without a key), else champion."""
        if self.mode != "canary" or not canary_available or self.canary_share <= 0.0:
            return ROUTE_CHAMPION
        point = sticky_point(key) if key else self._rng.random()
        return ROUTE_CANARY if point < self.canary_share else ROUTE_CHAMPION
