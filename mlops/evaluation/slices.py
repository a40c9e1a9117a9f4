"""Slices of the holdout: metrics per value of a segment column, with counts and bootstrap intervals.

An average can hide a segment the model serves badly. Each slice is scored with the same
`compute_metrics` as the whole holdout; slices with fewer than `evaluation.min_slice_rows` rows are
reported but not judged, because a metric on a handful of rows says more about the draw than the model.
Intervals are percentile bootstraps computed with `mlops.metrics.weighted_metric` (the same metric).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import EvaluationConfig
from mlops.errors import DataError
from mlops.metrics import (
    DECIMALS,
    Predictions,
    higher_is_better,
    score_predictions,
    weighted_metric,
)

MISSING = "(missing)"


def bootstrap_intervals(
    task: str,
    truth: np.ndarray,
    predictions: Predictions,
    metrics: Iterable[str],
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric on these rows; a metric undefined on most resamples is left out."""
    rows = len(truth)
    if rows == 0:
        return {}
    rng = np.random.default_rng(seed)
    # Row draw counts of every resample at once: each row of `counts` is one resample.
    counts = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=samples).astype(float)
    alpha = (1.0 - confidence) / 2.0
    intervals = {}
    for metric in dict.fromkeys(metrics):
        try:
            values = weighted_metric(task, metric, truth, predictions)(counts)
        except Exception:  # a metric this task or these rows cannot resample: no interval, not a failure
            continue
        values = values[np.isfinite(values)]
        if len(values) < samples / 2:
            continue
        low, high = np.quantile(values, [alpha, 1.0 - alpha])
        intervals[metric] = (round(float(low), DECIMALS), round(float(high), DECIMALS))
    return intervals


def subset(predictions: Predictions, mask: np.ndarray) -> Predictions:
    """The predictions of the rows `mask` selects."""
    score = None if predictions.score is None else predictions.score[mask]
    return Predictions(pred=predictions.pred[mask], score=score, classes=predictions.classes)


@dataclass(frozen=True)
class SliceResult:
    """One slice: the rows of the holdout where `segment` equals `value`."""

    segment: str
    value: str
    rows: int
    judged: bool
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a reason names the slice: 'contract=month-to-month'."""
        return f"{self.segment}={self.value}"


@dataclass(frozen=True)
class SliceReport:
    """Every slice of every segment column, and the row count below which a slice is not judged."""

    segments: tuple[str, ...]
    min_rows: int
    slices: tuple[SliceResult, ...]

    def judged(self, segment: str | None = None) -> list[SliceResult]:
        return [s for s in self.slices if s.judged and (segment is None or s.segment == segment)]

    def worst(self, metric: str) -> SliceResult | None:
        """The judged slice with the worst value of `metric` (None: no judged slice has it)."""
        scored = [s for s in self.judged() if _finite(s.metrics.get(metric))]
        if not scored:
            return None
        pick = min if higher_is_better(metric) else max
        return pick(scored, key=lambda s: s.metrics[metric])

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": list(self.segments),
            "min_rows": self.min_rows,
            "slices": [{**asdict(s), "intervals": {k: list(v) for k, v in s.intervals.items()}} for s in self.slices],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SliceReport:
        slices = tuple(
            SliceResult(
                segment=s["segment"], value=s["value"], rows=int(s["rows"]), judged=bool(s["judged"]),
                metrics=dict(s["metrics"]), intervals={k: (v[0], v[1]) for k, v in s.get("intervals", {}).items()},
            )
            for s in raw.get("slices", [])
        )
        return cls(tuple(raw.get("segments", [])), int(raw.get("min_rows", 0)), slices)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def slice_labels(column: pd.Series) -> np.ndarray:
    """Each row's slice name: its value as text, missing values in a slice of their own."""
    return np.where(column.isna().to_numpy(), MISSING, column.astype(str).to_numpy())


def compute_slices(
    holdout: pd.DataFrame,
    truth: np.ndarray,
    predictions: Predictions,
    task: str,
    evaluation: EvaluationConfig,
    interval_metrics: Sequence[str],
    seed: int,
) -> SliceReport:
    """Metrics of each slice of the holdout, largest slices first within a segment column.

    Intervals are computed for `interval_metrics` only (the primary and gated metrics): a bootstrap per
    metric per slice is the costly part.
    """
    missing = [name for name in evaluation.segments if name not in holdout.columns]
    if missing:
        raise DataError(f"evaluation.segments: column {', '.join(repr(m) for m in missing)} is not in the holdout")
    results = []
    for segment in evaluation.segments:
        labels = slice_labels(holdout[segment])
        values, counts = np.unique(labels, return_counts=True)
        for value, rows in sorted(zip(values.tolist(), counts.tolist(), strict=True), key=lambda vc: (-vc[1], vc[0])):
            mask = labels == value
            part_truth, part = truth[mask], subset(predictions, mask)
            intervals = bootstrap_intervals(
                task, part_truth, part, interval_metrics, evaluation.bootstrap_samples, evaluation.confidence, seed
            )
            results.append(
                SliceResult(
                    segment=segment, value=value, rows=int(rows), judged=rows >= evaluation.min_slice_rows,
                    metrics=score_predictions(task, part_truth, part), intervals=intervals,
                )
            )
    return SliceReport(tuple(evaluation.segments), evaluation.min_slice_rows, tuple(results))
