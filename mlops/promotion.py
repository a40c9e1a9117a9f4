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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.audit import ACTION_ROLLED_BACK, TAG_LAST_ACTION, TAG_LAST_AT
from mlops.config import GatesConfig, PipelineConfig, PromotionConfig, SplitConfig
from mlops.contract import DataContract
from mlops.errors import ConfigError, DataError
from mlops.evaluation import METRICS_BY_TASK, check_gates, compute_metrics, split_frame
from mlops.training import feature_frame

# Error-like metrics: a smaller value is a better model. Every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss"})
# Metrics are rounded to 6 decimals (evaluation.DECIMALS); a difference below this is float noise.
_EPS = 1e-9
# Resamples are scored in blocks so a large holdout never needs a (samples x rows) matrix at once.
_BLOCK_CELLS = 1_000_000


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


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


@dataclass(frozen=True)
class Predictions:
    """One model's output on the holdout rows: labels/values, scores, and its class order."""

    pred: np.ndarray
    score: np.ndarray | None = None
    classes: tuple[Any, ...] | None = None


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
    features = feature_frame(holdout, contract)
    pred = np.asarray(pipeline.predict(features))
    if contract.task != "classification":
        return Predictions(pred=pred.astype(float))
    score = None
    if hasattr(pipeline, "predict_proba"):
        score = np.asarray(pipeline.predict_proba(features), dtype=float)
    elif hasattr(pipeline, "decision_function"):
        score = np.asarray(pipeline.decision_function(features), dtype=float)
    return Predictions(pred=pred, score=score, classes=tuple(pipeline.classes_))


def holdout_metrics(task: str, truth: Sequence[Any] | np.ndarray, predictions: Predictions) -> dict[str, float]:
    """The same metrics training reports, on the shared holdout."""
    return compute_metrics(task, truth, predictions.pred, predictions.score, predictions.classes)


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
    new_metric = _weighted_metric(task, metric, truth, challenger)
    old_metric = _weighted_metric(task, metric, truth, champion)
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


WeightedMetric = Callable[[np.ndarray], np.ndarray]


def _weighted_metric(task: str, metric: str, truth: np.ndarray, p: Predictions) -> WeightedMetric:
    """A function of (resamples x rows) draw counts returning the metric per resample (NaN: undefined).

    With all counts 1 it equals `compute_metrics` on the rows (tested), so the bootstrap judges the
    very metric the gates and the comparison use.
    """
    if task == "regression":
        return _weighted_regression(metric, truth.astype(float), p.pred.astype(float))
    labels = list(p.classes) if p.classes is not None else sorted(set(truth.tolist()) | set(p.pred.tolist()))
    pred = np.asarray(p.pred)
    if metric == "accuracy":
        correct = (pred == truth).astype(float)
        return lambda w: w @ correct / w.sum(axis=1)
    if metric in ("precision", "recall", "f1"):
        return _weighted_prf(metric, truth, pred, labels)
    proba = _proba_matrix(p.score, len(labels))
    if proba is None:
        return lambda w: np.full(w.shape[0], np.nan)
    if metric == "log_loss":
        return _weighted_log_loss(truth, proba, labels)
    if metric == "roc_auc" and len(labels) == 2:
        return _weighted_binary_auc(truth == labels[1], proba[:, 1])
    if metric == "pr_auc":
        return _weighted_pr_auc(truth, proba, labels)
    return _weighted_by_sklearn(metric, truth, pred, p.score, labels)


def _weighted_regression(metric: str, truth: np.ndarray, pred: np.ndarray) -> WeightedMetric:
    err = truth - pred
    if metric == "rmse":
        sq = err**2
        return lambda w: np.sqrt(w @ sq / w.sum(axis=1))
    if metric == "mae":
        ab = np.abs(err)
        return lambda w: w @ ab / w.sum(axis=1)
    if metric == "mape":
        if (truth == 0).any():  # compute_metrics leaves mape out when a target is 0
            return lambda w: np.full(w.shape[0], np.nan)
        rel = np.abs(err) / np.abs(truth)
        return lambda w: w @ rel / w.sum(axis=1)
    if metric == "r2":
        sq, y, y2 = err**2, truth, truth**2

        def r2(w: np.ndarray) -> np.ndarray:
            total = w.sum(axis=1)
            mean = w @ y / total
            ss_tot = w @ y2 - total * mean**2
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(ss_tot > 1e-12 * np.maximum(1.0, w @ y2), 1.0 - (w @ sq) / ss_tot, np.nan)

        return r2
    raise ConfigError(f"promotion.primary_metric: unknown metric '{metric}' for regression")


def _weighted_prf(metric: str, truth: np.ndarray, pred: np.ndarray, labels: list[Any]) -> WeightedMetric:
    # Binary: the positive class (labels[1]); multiclass: macro average, as compute_metrics does.
    chosen = [labels[1]] if len(labels) == 2 else labels
    parts = [
        (((pred == c) & (truth == c)).astype(float), (pred == c).astype(float), (truth == c).astype(float))
        for c in chosen
    ]

    def value(w: np.ndarray) -> np.ndarray:
        per_class = []
        for tp_row, pp_row, ap_row in parts:
            tp, pp, ap = w @ tp_row, w @ pp_row, w @ ap_row
            with np.errstate(divide="ignore", invalid="ignore"):
                if metric == "precision":
                    out = np.where(pp > 0, tp / pp, 0.0)
                elif metric == "recall":
                    out = np.where(ap > 0, tp / ap, 0.0)
                else:
                    out = np.where(pp + ap > 0, 2 * tp / (pp + ap), 0.0)
            per_class.append(out)
        return np.mean(per_class, axis=0)

    return value


def _proba_matrix(score: np.ndarray | None, n_classes: int) -> np.ndarray | None:
    if score is None:
        return None
    score = np.asarray(score, dtype=float)
    if score.ndim == 1 and n_classes == 2:
        return np.column_stack([1.0 - score, score])
    if score.ndim == 2 and score.shape[1] == n_classes:
        return score
    return None


def _weighted_log_loss(truth: np.ndarray, proba: np.ndarray, labels: list[Any]) -> WeightedMetric:
    column = {label: i for i, label in enumerate(labels)}
    is_proba = bool(
        np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
        and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    )
    if not is_proba or not set(truth.tolist()) <= column.keys():
        return lambda w: np.full(w.shape[0], np.nan)
    picked = proba[np.arange(len(truth)), [column[v] for v in truth.tolist()]]
    loss = -np.log(np.clip(picked, np.finfo(proba.dtype).eps, 1.0))
    return lambda w: w @ loss / w.sum(axis=1)


def _weighted_binary_auc(positive: np.ndarray, score: np.ndarray) -> WeightedMetric:
    """Weighted Mann-Whitney AUC, ties counting one half, for many weight vectors at once."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], positive[order].astype(float)
    neg = 1.0 - pos
    # For each sorted row: the first and last position of its group of tied scores.
    starts = np.searchsorted(s, s, side="left")
    ends = np.searchsorted(s, s, side="right") - 1

    def auc(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        cum_neg = np.cumsum(ws * neg, axis=1)
        padded = np.concatenate([np.zeros((ws.shape[0], 1)), cum_neg], axis=1)
        below = padded[:, starts]  # negatives strictly below each row's score
        tied = padded[:, ends + 1] - below  # negatives sharing each row's score
        numerator = ((ws * pos) * (below + 0.5 * tied)).sum(axis=1)
        n_pos, n_neg = ws @ pos, ws @ neg
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((n_pos > 0) & (n_neg > 0), numerator / (n_pos * n_neg), np.nan)

    return auc


def _weighted_average_precision(positive: np.ndarray, score: np.ndarray) -> WeightedMetric:
    """Weighted average precision (scikit-learn's step-wise definition), per weight vector."""
    order = np.argsort(-score, kind="stable")
    s, pos = score[order], positive[order].astype(float)
    # Last position of each group of tied scores: precision and recall are read only there.
    group_ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])

    def ap(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        tp = np.cumsum(ws * pos, axis=1)[:, group_ends]
        seen = np.cumsum(ws, axis=1)[:, group_ends]
        total_pos = tp[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(seen > 0, tp / seen, 0.0)
            recall = tp / total_pos
        steps = np.diff(np.concatenate([np.zeros((w.shape[0], 1)), recall], axis=1), axis=1)
        out = (steps * precision).sum(axis=1)
        return np.where(total_pos[:, 0] > 0, out, np.nan)

    return ap


def _weighted_pr_auc(truth: np.ndarray, proba: np.ndarray, labels: list[Any]) -> WeightedMetric:
    if len(labels) == 2:
        positive = truth == labels[1]
        binary = _weighted_average_precision(positive, proba[:, 1])

        def value(w: np.ndarray) -> np.ndarray:
            # compute_metrics needs both outcomes among the rows drawn.
            n_pos = w @ positive.astype(float)
            return np.where((n_pos > 0) & (n_pos < w.sum(axis=1)), binary(w), np.nan)

        return value
    per_class = [_weighted_average_precision(truth == label, proba[:, i]) for i, label in enumerate(labels)]
    indicators = [(truth == label).astype(float) for label in labels]

    def macro(w: np.ndarray) -> np.ndarray:
        # compute_metrics needs every class present among the rows drawn.
        present = np.all([w @ ind > 0 for ind in indicators], axis=0)
        return np.where(present, np.mean([f(w) for f in per_class], axis=0), np.nan)

    return macro


def _weighted_by_sklearn(
    metric: str, truth: np.ndarray, pred: np.ndarray, score: np.ndarray | None, labels: list[Any]
) -> WeightedMetric:
    """Slow path (one compute_metrics per resample): multiclass roc_auc."""

    def value(w: np.ndarray) -> np.ndarray:
        out = np.full(w.shape[0], np.nan)
        for i, weights in enumerate(w):
            keep = weights > 0
            # Repeating rows by their counts is exactly a resample; compute_metrics has no weights.
            idx = np.repeat(np.flatnonzero(keep), weights[keep].astype(int))
            got = compute_metrics("classification", truth[idx], pred[idx], None if score is None else score[idx], labels)
            out[i] = got.get(metric, np.nan)
        return out

    return value


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
