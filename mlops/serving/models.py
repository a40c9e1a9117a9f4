"""The models the service answers with, and the background refresher that hot-swaps them.

The request path only ever reads `ModelSlots.champion` / `.canary` (one attribute read), while
the refresher resolves aliases and loads new versions in a worker thread and then replaces the
reference on the event loop. A request keeps the model it started with, so a swap drops nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mlops.contract import DataContract
from mlops.promotion.split import ALIAS_ROLLOUT, TrafficSplit
from mlops.serving.scoring import LoadedModel

log = logging.getLogger(__name__)

SLOT_CHAMPION = "champion"
SLOT_CANARY = "canary"


class RegistryLike(Protocol):
    """What the refresher needs from mlops.registry.Registry (a fake in unit tests)."""

    def version_by_alias(self, name: str, alias: str) -> Any: ...

    def load_model(self, name: str, alias_or_version: str) -> Any: ...

    def load_contract(self, ref: Any) -> DataContract: ...

    def get_version(self, name: str, version: str) -> Any: ...

    def rollout_split(self, name: str) -> TrafficSplit | None: ...


@dataclass(frozen=True)
class _Plan:
    """What one refresh found: the model for each slot (None: alias absent) and any load errors."""

    models: dict[str, LoadedModel | None]
    errors: tuple[str, ...]
    split: TrafficSplit | None = None
    split_error: str | None = None  # the rollout tag could not be read: champion only


class ModelSlots:
    """Champion and canary for one registered model, refreshed from the registry's aliases.

    While a rollout runs (the registry's traffic split, `mlops.promotion.split`), the canary slot
    holds the version it rolls out, whatever the configured canary alias; `on_split` hears of
    every change of the split so the router follows it.
    """

    def __init__(
        self,
        registry_factory: Callable[[], RegistryLike],
        model_name: str,
        champion_alias: str,
        canary_alias: str | None,
        on_swap: Callable[[str, LoadedModel | None, LoadedModel | None], None] | None = None,
        on_split: Callable[[TrafficSplit | None], None] | None = None,
    ) -> None:
        self._factory = registry_factory
        self._registry: RegistryLike | None = None
        self.model_name = model_name
        self.aliases = {SLOT_CHAMPION: champion_alias}
        self._canary_alias = canary_alias
        if canary_alias is not None:
            self.aliases[SLOT_CANARY] = canary_alias
        self._on_swap = on_swap
        self._on_split = on_split
        self.split: TrafficSplit | None = None
        self.split_error: str | None = None
        self.champion: LoadedModel | None = None
        self.canary: LoadedModel | None = None
        self.registry_reachable = False
        self.last_refresh: float | None = None
        self.last_attempt: float | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def current(self, slot: str) -> LoadedModel | None:
        return self.champion if slot == SLOT_CHAMPION else self.canary

    async def refresh(self) -> None:
        """Re-read the aliases and swap in any moved version; never raises, records the error."""
        async with self._lock:
            self.last_attempt = time.time()
            try:
                plan = await asyncio.to_thread(self._plan)
            except Exception as err:  # registry down, network, auth: keep serving what is loaded
                self.registry_reachable = False
                self.last_error = _one_line(err)
                log.warning("registry unreachable; keeping loaded models: %s", self.last_error)
                return
            self.registry_reachable = True
            self.last_refresh = time.time()
            self.last_error = "; ".join(plan.errors) or None
            # The canary is loaded before the router is told to send it traffic, and the router
            # stops sending it traffic before it is dropped.
            if plan.split is not None:
                self.aliases[SLOT_CANARY] = ALIAS_ROLLOUT
            for slot, model in plan.models.items():
                if model is not None:
                    self._swap(slot, model)
            routed = _routing(plan.split) != _routing(self.split)
            self.split = plan.split
            self.split_error = plan.split_error
            if routed and self._on_split is not None:
                self._on_split(plan.split)
            for slot, model in plan.models.items():
                if model is None:
                    self._swap(slot, model)
            if plan.split is None:
                if self._canary_alias is None:
                    self.aliases.pop(SLOT_CANARY, None)
                else:
                    self.aliases[SLOT_CANARY] = self._canary_alias

    def _swap(self, slot: str, new: LoadedModel | None) -> None:
        old = self.current(slot)
        if old is new:
            return
        if slot == SLOT_CHAMPION:
            self.champion = new
        else:
            self.canary = new
        log.info(
            "%s: %s -> %s", self.aliases[slot],
            f"v{old.version}" if old else "none", f"v{new.version}" if new else "none",
        )
        if self._on_swap is not None:
            self._on_swap(slot, old, new)

    def _plan(self) -> _Plan:
        """Resolve every alias and load what moved (runs in a worker thread, off the request path)."""
        if self._registry is None:
            self._registry = self._factory()
        registry = self._registry
        models: dict[str, LoadedModel | None] = {}
        errors = []
        loaded = {m.version: m for m in (self.champion, self.canary) if m is not None}
        split_error = None
        try:
            split = registry.rollout_split(self.model_name)
        except Exception as err:
            # A tag that is not a split (BrokenSplit), or anything else reading it raised: no
            # rollout traffic, said in /ready; the champion is still resolved and loaded below
            # (a registry that is down fails there and the refresh says so).
            split = None
            split_error = f"{_one_line(err)}; serving the champion only"
            errors.append(split_error)
        targets: dict[str, str | None] = {SLOT_CHAMPION: self.aliases[SLOT_CHAMPION]}
        if split is not None or self._canary_alias is not None or self.canary is not None:
            targets[SLOT_CANARY] = None if split is not None else self._canary_alias
        for slot, alias in targets.items():
            current = self.current(slot)
            if alias is None and split is not None:
                alias = ALIAS_ROLLOUT
                try:
                    ref = registry.get_version(self.model_name, split.version)
                except Exception as err:  # a split naming a deleted version: no rollout traffic
                    errors.append(f"{alias} v{split.version} not found: {_one_line(err)}")
                    models[slot] = None
                    continue
            elif alias is None:  # the rollout ended and no canary is configured: drop it
                models[slot] = None
                continue
            else:
                ref = registry.version_by_alias(self.model_name, alias)
            if ref is None:
                # A champion whose alias vanished keeps serving (better than 503s); a canary stops.
                models[slot] = current if slot == SLOT_CHAMPION else None
                continue
            version = str(ref.version)
            if version in loaded:
                models[slot] = loaded[version]
                continue
            try:
                model = registry.load_model(self.model_name, version)
                contract = registry.load_contract(ref)
                candidate = LoadedModel(self.model_name, version, model, contract)
                candidate.warm_up()
                loaded[version] = models[slot] = candidate
            except Exception as err:  # a refused or broken artifact must not stop the refresher
                errors.append(f"{alias} v{version} not loaded: {_one_line(err)}")
                log.error("cannot load %s v%s (%s): %s", self.model_name, version, alias, errors[-1])
                models[slot] = current
        return _Plan(models, tuple(errors), split, split_error)

    def unload(self) -> None:
        """Drop every loaded version (the model was evicted); requests that hold one finish on it."""
        for slot in self.aliases:
            self._swap(slot, None)

    async def run_forever(self, interval: float) -> None:
        """Refresh every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    def status(self) -> dict[str, Any]:
        """What /ready reports."""
        def describe(model: LoadedModel | None, alias: str) -> dict[str, Any] | None:
            if model is None:
                return None
            return {"alias": alias, "version": model.version, "loaded_at": _iso(model.loaded_at)}

        return {
            "model_name": self.model_name,
            "models": {slot: describe(self.current(slot), alias) for slot, alias in self.aliases.items()},
            "registry_reachable": self.registry_reachable,
            "ready_for_swap": self.registry_reachable,
            "last_refresh": _iso(self.last_refresh),
            "last_attempt": _iso(self.last_attempt),
            "last_error": self.last_error,
            # One line when the registry's rollout tag is broken and the champion answers alone.
            "rollout_error": self.split_error,
            "rollout": None if self.split is None else {
                "version": self.split.version, "step": self.split.step,
                "challenger_share": self.split.challenger_share, "started_at": self.split.started_at,
            },
        }


def _routing(split: TrafficSplit | None) -> tuple[str, str | float] | None:
    """What of a split the router depends on (a new look's numbers alone change nothing)."""
    return None if split is None else (split.version, split.step)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    text = f"{type(err).__name__}: {text}" if not text.startswith(type(err).__name__) else text
    return text if len(text) <= 300 else text[:297] + "..."


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
