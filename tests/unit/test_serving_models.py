"""The model slots: alias moves are picked up off the request path; failures never unload a model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mlops.config import ModelConfig
from mlops.contract import DataContract, infer_contract
from mlops.errors import RegistryError
from mlops.local.simulate import simulate_churn
from mlops.promotion.split import TrafficSplit
from mlops.serving.models import SLOT_CANARY, SLOT_CHAMPION, ModelSlots
from mlops.training import fit_pipeline

# -- fakes shared with test_serving_app.py: a tiny fitted pipeline, an in-memory Registry --------

@cache
def fitted(seed: int = 0) -> tuple[Any, DataContract]:
    frame = simulate_churn(400, seed=seed)
    contract = infer_contract(frame, "churned", "event_time", "classification")
    model = ModelConfig(name="churn", params={"max_iter": 5})
    return fit_pipeline(frame, contract, model), contract


@dataclass
class Ref:
    version: str


@dataclass
class FakeRegistry:
    """Aliases and versions in a dict; `reachable = False` makes every call fail like a dead server."""

    aliases: dict[str, str] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    reachable: bool = True
    loads: list[str] = field(default_factory=list)
    split: str | None = None  # the rollout tag's text, as the registry holds it

    def rollout_split(self, name: str) -> TrafficSplit | None:
        self._check()
        return TrafficSplit.from_tag(self.split)

    def get_version(self, name: str, version: str) -> Ref:
        self._check()
        return Ref(version)

    def _check(self) -> None:
        if not self.reachable:
            raise ConnectionError("tracking server at http://127.0.0.1:1 refused the connection")

    def version_by_alias(self, name: str, alias: str) -> Ref | None:
        self._check()
        version = self.aliases.get(alias)
        return Ref(version) if version is not None else None

    def load_model(self, name: str, alias_or_version: str) -> Any:
        self._check()
        self.loads.append(alias_or_version)
        if alias_or_version in self.broken:
            raise RegistryError(f"refusing to load {name} v{alias_or_version}: types outside the skops allow-list: os.system")
        return fitted(int(alias_or_version))[0]

    def load_contract(self, ref: Ref) -> DataContract:
        self._check()
        return fitted(int(ref.version))[1]

# -- tests ---------------------------------------------------------------------------------------


def slots_for(registry: FakeRegistry, canary: str | None = None) -> tuple[ModelSlots, list]:
    swaps: list = []
    slots = ModelSlots(
        lambda: registry, "churn", "champion", canary,
        on_swap=lambda slot, old, new: swaps.append((slot, old and old.version, new and new.version)),
    )
    return slots, swaps


def refresh(slots: ModelSlots) -> None:
    asyncio.run(slots.refresh())


def test_first_refresh_loads_the_champion():
    registry = FakeRegistry(aliases={"champion": "1"})
    slots, swaps = slots_for(registry)
    assert slots.champion is None and not slots.status()["registry_reachable"]
    refresh(slots)
    assert slots.champion is not None and slots.champion.version == "1"
    assert swaps == [(SLOT_CHAMPION, None, "1")]
    status = slots.status()
    assert status["registry_reachable"] and status["models"]["champion"]["version"] == "1"
    assert status["last_refresh"] is not None and status["last_error"] is None


def test_a_moved_alias_swaps_in_the_new_version_once():
    registry = FakeRegistry(aliases={"champion": "1"})
    slots, swaps = slots_for(registry)
    refresh(slots)
    old = slots.champion
    refresh(slots)
    assert slots.champion is old and registry.loads == ["1"]  # unchanged alias: nothing reloaded
    registry.aliases["champion"] = "2"
    refresh(slots)
    assert slots.champion.version == "2" and slots.champion is not old
    assert swaps[-1] == (SLOT_CHAMPION, "1", "2")
    # The old object is untouched, so requests that already hold it finish on it.
    assert old.version == "1" and old.score([old.validator.validate([_row(old)])[0]]).predictions


def test_unreachable_registry_keeps_serving_and_says_so():
    registry = FakeRegistry(aliases={"champion": "1"})
    slots, _ = slots_for(registry)
    refresh(slots)
    registry.reachable = False
    refresh(slots)
    assert slots.champion is not None and slots.champion.version == "1"
    status = slots.status()
    assert status["registry_reachable"] is False and status["ready_for_swap"] is False
    assert "ConnectionError" in status["last_error"]
    registry.reachable = True
    refresh(slots)
    assert slots.status()["registry_reachable"] is True and slots.status()["last_error"] is None


def test_refused_artifact_is_not_swapped_in():
    registry = FakeRegistry(aliases={"champion": "1"}, broken={"2"})
    slots, swaps = slots_for(registry)
    refresh(slots)
    registry.aliases["champion"] = "2"
    refresh(slots)
    assert slots.champion.version == "1"
    assert "champion v2 not loaded" in slots.status()["last_error"]
    assert slots.status()["registry_reachable"] is True
    assert swaps == [(SLOT_CHAMPION, None, "1")]


def test_no_champion_alias_means_not_ready():
    slots, _ = slots_for(FakeRegistry())
    refresh(slots)
    assert slots.champion is None and slots.status()["registry_reachable"] is True


def test_canary_follows_its_alias_and_shares_an_identical_version():
    registry = FakeRegistry(aliases={"champion": "1", "challenger": "2"})
    slots, _ = slots_for(registry, canary="challenger")
    refresh(slots)
    assert (slots.champion.version, slots.canary.version) == ("1", "2")
    registry.aliases["challenger"] = "1"
    refresh(slots)
    assert slots.canary is slots.champion and registry.loads == ["1", "2"]
    del registry.aliases["challenger"]
    refresh(slots)
    assert slots.canary is None and slots.champion.version == "1"
    assert slots.status()["models"][SLOT_CANARY] is None


def test_champion_alias_removed_keeps_the_loaded_champion():
    registry = FakeRegistry(aliases={"champion": "1"})
    slots, _ = slots_for(registry)
    refresh(slots)
    del registry.aliases["champion"]
    refresh(slots)
    assert slots.champion is not None and slots.champion.version == "1"


def _row(model) -> dict:
    return {c.name: (c.min if c.kind == "numeric" else c.categories[0]) for c in model.contract.feature_columns}
