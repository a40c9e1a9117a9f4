"""Is each feature view materialized recently enough? The pure decision, with no Feast in it.

A view's bound is the tag `mlops.max_staleness_minutes` on its definition (features/*.py), so it is
reviewed with the view and travels in the registry to whoever reads it. A view older than its
bound, or never materialized, is stale: serving would answer from old values (or none), so the
materialize flow (when it fails) and the monitor announce it with `mlops.features.stale`.
A view without the tag has no bound and is never stale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops.errors import ConfigError

# The tag on a FeatureView that holds its bound, in minutes (Feast tags are strings).
STALENESS_TAG = "mlops.max_staleness_minutes"


@dataclass(frozen=True)
class Freshness:
    """One view's age against its bound at `checked_at`; `age_minutes` is None when never materialized."""

    view: str
    last_materialized: datetime | None
    max_staleness_minutes: float | None
    age_minutes: float | None
    checked_at: datetime

    @property
    def stale(self) -> bool:
        if self.max_staleness_minutes is None:
            return False
        return self.age_minutes is None or self.age_minutes > self.max_staleness_minutes

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "last_materialized": self.last_materialized.isoformat() if self.last_materialized else None,
            "max_staleness_minutes": self.max_staleness_minutes,
            "age_minutes": None if self.age_minutes is None else round(self.age_minutes, 2),
            "checked_at": self.checked_at.isoformat(),
            "stale": self.stale,
        }


def staleness_bound(view: str, tags: Mapping[str, str] | None) -> float | None:
    """The view's bound in minutes from its tags; None without the tag; a bad value is ConfigError."""
    raw = (tags or {}).get(STALENESS_TAG)
    if raw is None:
        return None
    try:
        minutes = float(raw)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes <= 0:
        # A typo must not silently switch the check off (or make every view stale for ever).
        raise ConfigError(f"feature view '{view}': tag {STALENESS_TAG}={raw!r} is not a positive number of minutes")
    return minutes


def assess(view: str, last_materialized: datetime | None, tags: Mapping[str, str] | None, now: datetime) -> Freshness:
    """How old `view` is at `now` against the bound its tags set."""
    age = None if last_materialized is None else (now - last_materialized).total_seconds() / 60
    return Freshness(view, last_materialized, staleness_bound(view, tags), age, now)


@dataclass(frozen=True)
class FreshnessReport:
    """The views one check looked at (a feature service's, or the materialize flow's), or why it could not."""

    views: tuple[Freshness, ...] = ()
    feature_service: str | None = None
    error: str | None = None

    @property
    def stale(self) -> list[str]:
        return [f.view for f in self.views if f.stale]

    def summary(self) -> str:
        what = f"feature service {self.feature_service}" if self.feature_service else "feature views"
        if self.error:
            return f"{what}: freshness unknown: {self.error}"
        stale = self.stale
        return f"{what}: {len(stale)} of {len(self.views)} views stale" + (f" ({', '.join(stale)})" if stale else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_service": self.feature_service,
            "views": [f.to_dict() for f in self.views],
            "stale": self.stale,
            "error": self.error,
        }


def render_markdown(report: FreshnessReport) -> str:
    """The check as a Prefect artifact: one row per view, stale ones first."""
    lines = [f"# Feature freshness: {report.summary()}", ""]
    if report.error:
        return "\n".join(lines) + "\n"
    lines += ["| feature view | last materialized (UTC) | age (min) | bound (min) | stale |", "|---|---|---|---|---|"]
    for f in sorted(report.views, key=lambda f: (not f.stale, f.view)):
        when = f.last_materialized.isoformat(timespec="seconds") if f.last_materialized else "never"
        age = "-" if f.age_minutes is None else f"{f.age_minutes:.1f}"
        bound = "none" if f.max_staleness_minutes is None else f"{f.max_staleness_minutes:g}"
        lines.append(f"| {f.view} | {when} | {age} | {bound} | {'yes' if f.stale else 'no'} |")
    return "\n".join(lines) + "\n"


def stale_views(views: Sequence[Freshness]) -> list[Freshness]:
    return [f for f in views if f.stale]
