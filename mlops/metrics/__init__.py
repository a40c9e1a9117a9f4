"""Metric names, directions and bounds; the point computation and the resampled (bootstrap) one.

One home for what a metric means, so the quality gate, the champion-vs-challenger decision and the
live performance check judge a model with the very same function.
"""

from mlops.metrics.catalogue import (
    CLASSIFICATION_METRICS,
    DECIMALS,
    LOWER_IS_BETTER,
    METRICS,
    METRICS_BY_TASK,
    REGRESSION_METRICS,
    MetricSpec,
    higher_is_better,
)
from mlops.metrics.point import (
    Predictions,
    class_scores,
    compute_metrics,
    predict,
    score_predictions,
)
from mlops.metrics.resampled import WeightedMetric, weighted_metric

__all__ = [
    "CLASSIFICATION_METRICS",
    "DECIMALS",
    "LOWER_IS_BETTER",
    "METRICS",
    "METRICS_BY_TASK",
    "REGRESSION_METRICS",
    "MetricSpec",
    "Predictions",
    "WeightedMetric",
    "class_scores",
    "compute_metrics",
    "higher_is_better",
    "predict",
    "score_predictions",
    "weighted_metric",
]
