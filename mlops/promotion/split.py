"""The traffic split of a rollout in progress, as the registry holds it for every serving replica.

The rollout flow writes it as one tag on the registered model (`mlops.rollout`); each serving app
re-reads it with the aliases (`serving.refresh_seconds`), loads the challenger version it names
and routes by it. Nothing restarts, and every replica reads the same value. No tag: no rollout,
and serving routes as its config says. A tag that is not a split (unparsable, or parsed into
anything the rollout flow would not write) is a broken split: `BrokenSplit`, never another
exception; serving then routes to the champion only and says so in `/ready`, and `mlops rollout
status` says so in one line (the safe side: the challenger gets nothing).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlops.config import SHADOW, check_rollout_steps
from mlops.errors import BrokenSplit

ROLLOUT_TAG = "mlops.rollout"
# What the prediction log and /ready call the challenger's answers while a rollout runs.
ALIAS_ROLLOUT = "rollout"
# What a look at a step may decide (mlops.promotion.rollout.judge_step).
Action = Literal["continue", "advance", "promote", "abort"]

__all__ = ["ALIAS_ROLLOUT", "ROLLOUT_TAG", "Action", "BrokenSplit", "TrafficSplit"]

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
        """The split a tag holds; None for no tag. BrokenSplit (one line) for a tag that is not a split."""
        if not text:
            return None
        if len(text) > _MAX_TAG_CHARS:
            raise _broken(f"over {_MAX_TAG_CHARS} characters")
        try:
            raw = json.loads(text)
        except RecursionError:
            raise _broken("nested too deep") from None
        except ValueError as err:  # JSONDecodeError, and integers past Python's digit limit
            raise _broken(f"not JSON ({err})") from None
        try:
            _Tag.model_validate(raw)
        except ValidationError as err:
            raise _broken(_first_error(err)) from None
        except RecursionError:  # a validator's own recursion on some shape nobody foresaw
            raise _broken("nested too deep") from None
        fields = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**fields)


# The registry holds a few kilobytes; more is not a tag the rollout flow wrote.
_MAX_TAG_CHARS = 100_000
# A registry version number, whole: no sign, space, decimal point or escape code.
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def _version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise ValueError("not a version number (a positive integer)")
    return value


def _timestamp(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 time") from None
    return value


def _step(value: Any) -> str | float:
    if value == SHADOW:
        return SHADOW
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ValueError("a step is 'shadow' or a traffic share above 0 and at most 1")
    return value


def _text(value: str) -> str:
    # Reasons and names end up on terminals and in /ready: no escape codes, no line breaks.
    if not value.isprintable() or len(value) > 2000:
        raise ValueError("not one line of printable text of at most 2000 characters")
    return value


_Version = Annotated[str, AfterValidator(_version)]
_Time = Annotated[str, AfterValidator(_timestamp)]
_Text = Annotated[str, AfterValidator(_text)]
_Count = Annotated[int, Field(ge=0)]
# One check, not a union: its error names the step rule, not each member of the union.
_Step = Annotated[Any, AfterValidator(_step)]


class _Shape(BaseModel):
    """Exactly what the rollout flow writes: JSON types as they are (no "1" for 1), no other keys."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Outcomes(_Shape):
    n: _Count
    mean: float
    variance: float


class _VersionLive(_Shape):
    requests: _Count
    errors: _Count = 0
    p99_ms: float | None = None
    outcomes: _Outcomes | None = None


class _ShadowLive(_Shape):
    rows: _Count
    agreement: float | None = None
    score_distance: float | None = None


class _Evidence(_Shape):
    step: _Step
    elapsed_minutes: float
    champion: _VersionLive
    challenger: _VersionLive
    shadow: _ShadowLive | None = None
    challenger_step_labelled: _Count | None = None


class _Sequential(_Shape):
    champion_rows: _Count
    challenger_rows: _Count
    difference: float
    std_error: float
    likelihood_ratio: float  # infinite when the outcomes are noiseless and differ
    p_value: float
    alpha: float
    verdict: Literal["worse", "better", "undecided"]


class _Verdict(_Shape):
    action: Action
    reasons: list[_Text]
    sequential: _Sequential | None = None


class _Look(_Shape):
    at: _Time
    verdict: _Verdict
    evidence: _Evidence


class _Tag(_Shape):
    model_name: _Text
    version: _Version
    champion_version: _Version | None
    steps: Annotated[list[_Step], Field(min_length=1, max_length=100), AfterValidator(check_rollout_steps)]
    step_index: _Count
    started_at: _Time
    step_started_at: _Time
    flow_run_id: _Text | None = None
    last_look: _Look | None = None

    @field_validator("last_look", mode="before")
    @classmethod
    def _no_look_yet(cls, value: Any) -> Any:
        return None if value == {} else value

    @model_validator(mode="after")
    def _step_in_steps(self) -> _Tag:
        if self.step_index >= len(self.steps):
            raise ValueError(f"step_index {self.step_index} beyond the {len(self.steps)} steps")
        return self


def _broken(reason: str) -> BrokenSplit:
    return BrokenSplit(f"tag {ROLLOUT_TAG} is not a traffic split: {_escaped(reason)}")


def _first_error(err: ValidationError) -> str:
    """The first problem as `field.path: message` (the offending value is never echoed)."""
    first = err.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "tag"
    message = first["msg"].removeprefix("Value error, ")
    more = err.error_count() - 1
    return f"{where}: {message}" + (f" (and {more} more)" if more else "")


def _escaped(text: str) -> str:
    """One printable line: control characters as Python escapes, at most 300 characters."""
    line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return line if len(line) <= 300 else line[:297] + "..."
