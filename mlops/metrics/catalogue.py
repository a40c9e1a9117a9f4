"""Every metric the project reports: its name, task, direction and the bounds any model respects.

Configs, gates, promotion, monitoring, MLflow and the serving layer all name metrics with these
strings; the direction a comparison takes and the bounds a gate threshold is checked against are
read from this one table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One metric: which task computes it, which way is better, and the range every value lies in."""

    name: str
    task: str
    higher_is_better: bool
    minimum: float | None = 0.0  # None: unbounded below (r2 of a model worse than the mean)
    maximum: float | None = None  # None: unbounded above (errors, log loss)


# Binary: precision/recall/f1 are for the positive class (the second of the sorted classes, e.g. 1
# for 0/1 churn) and roc_auc/pr_auc score that class. Multiclass: precision/recall/f1 are macro
# averages, roc_auc is macro one-vs-rest, pr_auc the macro mean of one-vs-rest average precision.
# mape is a fraction (0.12 = 12 %), as scikit-learn returns it.
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("accuracy", "classification", True, 0.0, 1.0),
        MetricSpec("precision", "classification", True, 0.0, 1.0),
        MetricSpec("recall", "classification", True, 0.0, 1.0),
        MetricSpec("f1", "classification", True, 0.0, 1.0),
        MetricSpec("roc_auc", "classification", True, 0.0, 1.0),
        MetricSpec("pr_auc", "classification", True, 0.0, 1.0),
        MetricSpec("log_loss", "classification", False),
        MetricSpec("rmse", "regression", False),
        MetricSpec("mae", "regression", False),
        MetricSpec("r2", "regression", True, None, 1.0),
        MetricSpec("mape", "regression", False),
    )
}

CLASSIFICATION_METRICS: tuple[str, ...] = tuple(n for n, s in METRICS.items() if s.task == "classification")
REGRESSION_METRICS: tuple[str, ...] = tuple(n for n, s in METRICS.items() if s.task == "regression")
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "classification": CLASSIFICATION_METRICS,
    "regression": REGRESSION_METRICS,
}
# Error-like metrics: a smaller value is a better model. Every other metric is better when larger.
LOWER_IS_BETTER: frozenset[str] = frozenset(n for n, s in METRICS.items() if not s.higher_is_better)

# Every reported metric is a plain float rounded to this many decimals.
DECIMALS = 6


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` means a better model (unknown names count as larger-better)."""
    spec = METRICS.get(metric)
    return True if spec is None else spec.higher_is_better
