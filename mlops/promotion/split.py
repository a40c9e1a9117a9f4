"""The traffic split of a rollout in progress, as the registry holds it for every serving replica.

The rollout flow writes it as one tag on the registered model (`mlops.rollout`); each serving app
re-reads it with the aliases (`serving.refresh_seconds`), loads the challenger version it names
and routes by it. Nothing restarts, and every replica reads the same value. No tag: no rollout,
and serving routes as its config says. A tag it cannot read is ignored with a warning (a
rollout then sends the challenger nothing, the safe side), never a crash of the refresher.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mlops.config import SHADOW

ROLLOUT_TAG = "mlops.rollout"
# What the prediction log and /ready call the challenger's answers while a rollout runs.
ALIAS_ROLLOUT = "rollout"


@dataclass(frozen=True)
class TrafficSplit:
    """Which version is rolled out, at which step, since when; plus the last look's verdict."""

    model_name: str
    version: str
    champion_version: str | None
    steps: list[str | float]
    step_index: int
    started_at: str  # ISO 8601 UTC: when the rollout began (its evidence is counted from here)
    step_started_at: str
    flow_run_id: str | None = None
    last_look: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> str | float:
        return self.steps[self.step_index]

    @property
    def shadow(self) -> bool:
        return self.step == SHADOW

    @property
    def challenger_share(self) -> float:
        """The share of callers the challenger answers (0 in shadow: it scores unseen)."""
        return 0.0 if self.shadow else float(self.step)

    @property
    def last_step(self) -> bool:
        return self.step_index == len(self.steps) - 1

    def describe_step(self) -> str:
        return "shadow" if self.shadow else f"{self.challenger_share:.0%} of traffic"

    def at_step(self, index: int, now: str) -> TrafficSplit:
        return replace(self, step_index=index, step_started_at=now, last_look={})

    def with_look(self, look: dict[str, Any]) -> TrafficSplit:
        return replace(self, last_look=look)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "step": self.step, "challenger_share": self.challenger_share}

    def to_tag(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_tag(cls, text: str | None) -> TrafficSplit | None:
        """The split a tag holds; None for no tag. ValueError for a tag that is not a split."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
            split = cls(**known)
            split.step  # noqa: B018 (an index outside the steps is a broken tag)
            if not split.shadow and not 0.0 < float(split.step) <= 1.0:
                raise ValueError(f"share {split.step} outside (0, 1]")
        except (TypeError, KeyError, IndexError, ValueError, AttributeError) as err:
            raise ValueError(f"tag {ROLLOUT_TAG} is not a traffic split: {err}") from err
        return split
