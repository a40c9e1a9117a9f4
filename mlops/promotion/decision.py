"""Champion-vs-challenger: a fair comparison on shared holdout rows and the promotion decision.

Both models are scored on the same rows; the challenger replaces the champion only if it is not worse
on `promotion.primary_metric` by more than `promotion.tolerance`, meets every absolute gate, and (when
configured) passes a paired significance test. Everything here is pure: the flow supplies the data and
the fitted pipelines and acts on the returned decision. The paired significance tests are in `mlops.promotion.significance`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlops.audit import ACTION_ROLLED_BACK, TAG_LAST_ACTION, TAG_LAST_AT
from mlops.config import GatesConfig, PromotionConfig
from mlops.errors import ConfigError
from mlops.evaluation import SliceReport, check_gates
from mlops.metrics import METRICS_BY_TASK, higher_is_better

if TYPE_CHECKING:
    from mlops.promotion.significance import PairedEvidence

# Metrics are rounded to 6 decimals (metrics.DECIMALS); a difference below this is float noise.
EPS = 1e-9


@dataclass(frozen=True)
class PromotionCheck:
    """One condition of the promotion decision."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the challenger replaces the champion, why, and every check behind it."""

    promote: bool
    reason: str
    checks: tuple[PromotionCheck, ...]
    primary_metric: str
    first_champion: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "primary_metric": self.primary_metric,
            "first_champion": self.first_champion,
            "checks": [asdict(c) for c in self.checks],
        }


def validate_policy(policy: PromotionConfig, task: str) -> None:
    """Refuse a primary metric the task does not compute and a test the task cannot run."""
    known = METRICS_BY_TASK.get(task)
    if known is None:
        raise ConfigError(f"model.task: unknown task '{task}' (known: {', '.join(METRICS_BY_TASK)})")
    if policy.primary_metric not in known:
        raise ConfigError(
            f"promotion.primary_metric: unknown metric '{policy.primary_metric}' for {task} "
            f"(known: {', '.join(known)})"
        )
    if policy.significance == "mcnemar" and task != "classification":
        raise ConfigError(
            "promotion.significance: mcnemar compares per-row correctness, which only "
            f"classification has; use bootstrap for {task}"
        )


# -- the decision ---------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def decide_promotion(
    challenger_metrics: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    policy: PromotionConfig,
    gates: GatesConfig,
    paired_evidence: PairedEvidence | None = None,
    *,
    task: str,
    slice_reports: tuple[SliceReport, SliceReport] | None = None,
) -> PromotionDecision:
    """Promote iff every gate holds, the challenger is not worse beyond tolerance, and the test passes.

    With `promotion.compare_worst_slice`, `slice_reports` (challenger's, champion's, on the shared
    holdout) must be given: the challenger's worst judged slice may not be worse than the champion's
    worst by more than the tolerance either.

    `champion_metrics` None means there is no champion: the first model that passes the gates becomes
    champion (there is nothing to compare with, so neither tolerance nor significance applies).
    """
    validate_policy(policy, task)
    metric = policy.primary_metric
    checks = [
        PromotionCheck(f"gate:{g.metric}:{g.bound}", g.passed, g.describe())
        for g in check_gates(challenger_metrics, gates)
    ]
    gate_failures = [c.detail for c in checks if not c.passed]
    if champion_metrics is None:
        if gate_failures:
            reason = f"no champion yet, and the challenger fails the quality gate: {'; '.join(gate_failures)}"
            return PromotionDecision(False, reason, tuple(checks), metric, first_champion=True)
        passed = f"passes all {len(checks)} gates" if checks else "no gates configured"
        value = challenger_metrics.get(metric)
        shown = f" ({metric} {_fmt(value)})" if value is not None else ""
        return PromotionDecision(True, f"first champion{shown}: {passed}", tuple(checks), metric, first_champion=True)

    higher = higher_is_better(metric)
    direction = "higher" if higher else "lower"
    new, old = challenger_metrics.get(metric), champion_metrics.get(metric)
    if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
        which = "challenger" if new is None else "champion"
        comparison = PromotionCheck(
            f"compare:{metric}", False, f"{metric} is not defined for the {which} on the shared holdout"
        )
    else:
        improvement = (new - old) if higher else (old - new)
        ok = improvement >= -policy.tolerance - EPS
        if ok and improvement > EPS:
            verdict = "better"
        elif ok:
            verdict = "not worse beyond tolerance" if improvement < -EPS else "equal"
        else:
            verdict = f"worse by {abs(improvement):.4f} > tolerance {policy.tolerance:g}"
        comparison = PromotionCheck(
            f"compare:{metric}",
            ok,
            f"challenger {metric} {_fmt(new)} vs champion {_fmt(old)} ({direction} is better): {verdict}",
        )
    checks.append(comparison)

    if policy.compare_worst_slice:
        if slice_reports is None:
            raise ValueError("promotion.compare_worst_slice is on: the slice reports of both models are required")
        checks.append(compare_worst_slices(metric, slice_reports[0], slice_reports[1], policy.tolerance))

    if policy.significance != "none":
        if paired_evidence is None or paired_evidence.method != policy.significance:
            raise ValueError(f"promotion.significance is {policy.significance}: its paired evidence is required")
        p_value = paired_evidence.p_value
        significant = p_value is not None and p_value < policy.alpha
        shown = "undefined" if p_value is None else f"{p_value:.4f}"
        relation = "<" if significant else ">="
        checks.append(
            PromotionCheck(
                f"significance:{policy.significance}",
                significant,
                f"{policy.significance}: one-sided p {shown} {relation} alpha {policy.alpha:g} "
                "(H0: the challenger is not better)",
            )
        )
    failures = [c.detail for c in checks if not c.passed]
    if failures:
        return PromotionDecision(False, "; ".join(failures), tuple(checks), metric)
    return PromotionDecision(True, comparison.detail, tuple(checks), metric)


def compare_worst_slices(
    metric: str, challenger: SliceReport, champion: SliceReport, tolerance: float
) -> PromotionCheck:
    """The challenger's worst judged slice against the champion's, on `metric`; passes when neither has one."""
    new, old = challenger.worst(metric), champion.worst(metric)
    name = f"worst-slice:{metric}"
    if new is None or old is None:
        return PromotionCheck(name, True, f"no judged slice with {metric} to compare")
    higher = higher_is_better(metric)
    new_value, old_value = new.metrics[metric], old.metrics[metric]
    improvement = (new_value - old_value) if higher else (old_value - new_value)
    ok = improvement >= -tolerance - EPS
    shown = (f"worst slice: challenger {new.label} {metric} {_fmt(new_value)} vs champion {old.label} "
             f"{_fmt(old_value)}")
    verdict = "not worse beyond tolerance" if ok else f"worse by {abs(improvement):.4f} > tolerance {tolerance:g}"
    return PromotionCheck(name, ok, f"{shown}: {verdict}")


def candidate_blocker(tags: Mapping[str, str]) -> str | None:
    """Why a version may not be deployed at all, judged from its tags; None when it may."""
    if tags.get(TAG_LAST_ACTION) == ACTION_ROLLED_BACK:
        # Holdout metrics cannot see what production saw; register a new version instead.
        return f"this version was rolled back from production at {tags.get(TAG_LAST_AT, 'an unknown time')}"
    return None
