"""Champion-vs-challenger: a fair comparison on shared holdout rows and the promotion decision.

Both models are scored on the same rows; the challenger replaces the champion only if it is not worse
on `promotion.primary_metric` by more than `promotion.tolerance`, meets every absolute gate, and (when
configured) passes a paired significance test. Everything here is pure: the flow supplies the data and
the fitted pipelines and acts on the returned decision.

Significance, precisely: both tests are one-sided *superiority* tests. The null hypothesis is "the
challenger is not better than the champion"; it is promoted only when that is rejected at
`promotion.alpha`. So with a significance test configured, a challenger that merely ties (for instance
the same model retrained on the same data) is refused: the test exists to stop promotions on noise.
- `bootstrap`: rows are resampled with replacement `bootstrap_samples` times (seeded by `model.seed`);
  both models are scored on each resample; p = (1 + #{resamples where the challenger is not better})
  / (1 + #{resamples where the metric is defined}).
- `mcnemar`: exact McNemar on per-row correctness (classification only): with b rows only the
  challenger gets right and c rows only the champion gets right, p = P(X >= b) for X ~ Binomial(b + c,
  1/2). The exact test is valid for every b + c and cheap to compute, so the chi-square approximation
  is not used. Note it judges accuracy-like correctness, whatever the primary metric is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.audit import ACTION_ROLLED_BACK, TAG_LAST_ACTION, TAG_LAST_AT
from mlops.config import GatesConfig, PipelineConfig, PromotionConfig, SplitConfig
from mlops.contract import DataContract
from mlops.errors import ConfigError, DataError
from mlops.evaluation import check_gates, split_frame
from mlops.metrics import (
    METRICS_BY_TASK,
    Predictions,
    higher_is_better,
    predict,
    score_predictions,
    weighted_metric,
)
from mlops.training import feature_frame

# Metrics are rounded to 6 decimals (metrics.DECIMALS); a difference below this is float noise.
_EPS = 1e-9
# Resamples are scored in blocks so a large holdout never needs a (samples x rows) matrix at once.
_BLOCK_CELLS = 1_000_000


@dataclass(frozen=True)
class PromotionCheck:
    """One condition of the promotion decision."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class PairedEvidence:
    """Result of a paired significance test of challenger against champion on the same rows."""

    method: str  # "bootstrap" or "mcnemar"
    p_value: float | None  # one-sided, H0: the challenger is not better; None when undefined
    observed_improvement: float | None  # oriented: > 0 means the challenger is better
    rows: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# -- the shared holdout ---------------------------------------------------------------------------


def promotion_holdout(frame: pd.DataFrame, contract: DataContract, config: PipelineConfig) -> pd.DataFrame:
    """The rows both models are scored on.

    With `promotion.holdout_uri` the whole frame read from it; otherwise the latest `split.test_size`
    share of the training data (a time split when the contract names a timestamp, else the config's).
    """
    if config.promotion.holdout_uri:
        holdout = frame
    else:
        method = "time" if contract.timestamp and contract.timestamp in frame.columns else config.split.method
        split = SplitConfig(method=method, test_size=config.split.test_size)
        _, holdout = split_frame(frame, contract, split, config.model.seed)
    if len(holdout) == 0:
        raise DataError("the promotion holdout is empty")
    if contract.target not in holdout.columns:
        raise DataError(f"target column '{contract.target}' is not in the promotion holdout")
    missing = int(holdout[contract.target].isna().sum())
    if missing:
        raise DataError(f"target column '{contract.target}' has {missing} missing values in the promotion holdout")
    return holdout


def predict_holdout(pipeline: Any, holdout: pd.DataFrame, contract: DataContract) -> Predictions:
    """Predict the holdout with the columns this model's own contract names, as serving does."""
    return predict(pipeline, feature_frame(holdout, contract), contract.task)


def holdout_metrics(task: str, truth: Sequence[Any] | np.ndarray, predictions: Predictions) -> dict[str, float]:
    """The same metrics training reports, on the shared holdout."""
    return score_predictions(task, truth, predictions)


# -- paired significance --------------------------------------------------------------------------


def mcnemar_test(truth: np.ndarray, challenger: Predictions, champion: Predictions) -> PairedEvidence:
    """Exact one-sided McNemar test on per-row correctness (H0: the challenger is not more accurate)."""
    from scipy.stats import binomtest

    truth = np.asarray(truth)
    right_new = np.asarray(challenger.pred) == truth
    right_old = np.asarray(champion.pred) == truth
    only_new = int(np.sum(right_new & ~right_old))
    only_old = int(np.sum(~right_new & right_old))
    discordant = only_new + only_old
    # No discordant rows: no evidence either way, which is not evidence the challenger is better.
    p_value = 1.0 if discordant == 0 else float(binomtest(only_new, discordant, 0.5, alternative="greater").pvalue)
    return PairedEvidence(
        method="mcnemar",
        p_value=p_value,
        observed_improvement=(only_new - only_old) / len(truth) if len(truth) else None,
        rows=len(truth),
        details={"only_challenger_right": only_new, "only_champion_right": only_old},
    )


def paired_bootstrap(
    task: str,
    metric: str,
    truth: np.ndarray,
    challenger: Predictions,
    champion: Predictions,
    samples: int,
    seed: int,
) -> PairedEvidence:
    """Paired bootstrap of the primary-metric difference (H0: the challenger is not better)."""
    truth = np.asarray(truth)
    rows = len(truth)
    if rows == 0:
        raise DataError("the promotion holdout is empty")
    sign = 1.0 if higher_is_better(metric) else -1.0
    new_metric = weighted_metric(task, metric, truth, challenger)
    old_metric = weighted_metric(task, metric, truth, champion)
    ones = np.ones((1, rows))
    observed = sign * (new_metric(ones)[0] - old_metric(ones)[0])
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, _BLOCK_CELLS // rows))
    diffs: list[np.ndarray] = []
    done = 0
    while done < samples:
        size = min(block, samples - done)
        # Multinomial counts = how often each row is drawn: the same resample for both models.
        weights = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=size).astype(float)
        diffs.append(sign * (new_metric(weights) - old_metric(weights)))
        done += size
    improvement = np.concatenate(diffs)
    valid = improvement[np.isfinite(improvement)]
    details: dict[str, Any] = {"metric": metric, "samples": samples, "valid_samples": int(valid.size), "seed": seed}
    p_value = None
    # Resamples where the metric is undefined (one class drawn) are dropped; too many and we say nothing.
    if valid.size >= max(1, samples // 2):
        p_value = float((1 + np.sum(valid <= _EPS)) / (1 + valid.size))
        low, high = np.percentile(valid, [2.5, 97.5])
        details["ci95_improvement"] = [round(float(low), 6), round(float(high), 6)]
    return PairedEvidence(
        method="bootstrap",
        p_value=p_value,
        observed_improvement=None if not math.isfinite(observed) else round(float(observed), 6),
        rows=rows,
        details=details,
    )


def paired_evidence(
    policy: PromotionConfig,
    task: str,
    truth: np.ndarray,
    challenger: Predictions,
    champion: Predictions,
    seed: int,
) -> PairedEvidence | None:
    """The paired test the policy asks for, or None when it asks for none."""
    validate_policy(policy, task)
    if policy.significance == "none":
        return None
    if policy.significance == "mcnemar":
        return mcnemar_test(truth, challenger, champion)
    return paired_bootstrap(
        task, policy.primary_metric, truth, challenger, champion, policy.bootstrap_samples, seed
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
) -> PromotionDecision:
    """Promote iff every gate holds, the challenger is not worse beyond tolerance, and the test passes.

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
        ok = improvement >= -policy.tolerance - _EPS
        if ok and improvement > _EPS:
            verdict = "better"
        elif ok:
            verdict = "not worse beyond tolerance" if improvement < -_EPS else "equal"
        else:
            verdict = f"worse by {abs(improvement):.4f} > tolerance {policy.tolerance:g}"
        comparison = PromotionCheck(
            f"compare:{metric}",
            ok,
            f"challenger {metric} {_fmt(new)} vs champion {_fmt(old)} ({direction} is better): {verdict}",
        )
    checks.append(comparison)

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


def candidate_blocker(tags: Mapping[str, str]) -> str | None:
    """Why a version may not be deployed at all, judged from its tags; None when it may."""
    if tags.get(TAG_LAST_ACTION) == ACTION_ROLLED_BACK:
        # Holdout metrics cannot see what production saw; register a new version instead.
        return f"this version was rolled back from production at {tags.get(TAG_LAST_AT, 'an unknown time')}"
    return None
