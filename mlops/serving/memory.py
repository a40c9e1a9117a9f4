"""Which catalogue models are in memory: loaded on first use, evicted least-recently-used.

Tens of models fit one process only if the idle ones do not stay loaded: `LoadedModels` keeps at
most `serving.max_loaded_models` of them (the default model's value applies app-wide). A model
is loaded by its first request (which waits for it, so an evicted model answers a little later,
never with an error) and refreshed from then on; loading one more than the limit evicts the model
used longest ago. A model with requests in flight is never evicted: its champion stays loaded
until they are answered, and the limit is exceeded for that while rather than failing a request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.serving.state import ModelService

log = logging.getLogger(__name__)


class LoadedModels:
    """The loaded models in least-recently-used order, at most `limit` of them when none is busy."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: OrderedDict[str, ModelService] = OrderedDict()
        self.evictions = 0

    @property
    def names(self) -> list[str]:
        """Loaded (or loading) models, least recently used first."""
        return list(self._order)

    def touch(self, service: ModelService) -> None:
        """A request used `service`: it becomes the most recently used (the hot path; O(1))."""
        try:
            self._order.move_to_end(service.name)
        except KeyError:
            pass

    async def use(self, service: ModelService) -> None:
        """Load `service` unless it is loaded or loading, and wait until its first load is done."""
        if service.activation is None:
            loop = asyncio.get_running_loop()
            service.activation = loop.create_task(service.activate(), name=f"load-{service.name}")
            self._order[service.name] = service
            await self._evict_beyond_limit(keep=service)
        else:
            self.touch(service)
        # Shielded: a caller that disconnects must not cancel a load other requests wait for.
        await asyncio.shield(service.activation)

    async def _evict_beyond_limit(self, keep: ModelService) -> None:
        while len(self._order) > self.limit:
            victim = next(
                (s for s in self._order.values() if s is not keep and s.in_flight == 0 and _settled(s)), None
            )
            if victim is None:
                return  # every other loaded model is answering a request: over the limit for now
            del self._order[victim.name]
            self.evictions += 1
            log.info("evicting %s (least recently used; serving.max_loaded_models=%d)", victim.name, self.limit)
            await victim.deactivate()

    async def forget(self, service: ModelService) -> None:
        """Unload `service` (shutdown)."""
        self._order.pop(service.name, None)
        await service.deactivate()


def _settled(service: ModelService) -> bool:
    """Its load has finished (a load under way has callers waiting on it)."""
    return service.activation is None or service.activation.done()
