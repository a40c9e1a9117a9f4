"""The quality gate: configured min/max bounds on holdout metrics, checked and enforced.

Which metrics exist for a task and the range each can take come from `mlops.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlops.config import GatesConfig
from mlops.errors import ConfigError, QualityGateFailed
from mlops.evaluation.slices import SliceReport
from mlops.metrics import METRICS, METRICS_BY_TASK, higher_is_better


@dataclass(frozen=True)
class GateResult:
    """One bound of the quality gate checked against one holdout metric."""

    metric: str
    bound: str  # "min" or "max"
    threshold: float
    value: float | None
    passed: bool

    def describe(self) -> str:
        """One readable line, e.g. 'roc_auc 0.7712 < min 0.8'."""
        if self.value is None:
            return f"{self.metric} was not computed ({self.bound} {self.threshold:g})"
        shown = _format_value(self.value, self.threshold)
        if self.bound == "min":
            relation = ">=" if self.passed else "<"
        else:
            relation = "<=" if self.passed else ">"
        return f"{self.metric} {shown} {relation} {self.bound} {self.threshold:g}"


def _format_value(value: float, threshold: float) -> str:
    """Four decimals, or more when four would print a failing value equal to its threshold."""
    for digits in range(4, 11):
        text = f"{value:.{digits}f}"
        if value == threshold or float(text) != threshold:
            return text
    return repr(value)


def validate_gates(gates: GatesConfig, task: str) -> None:
    """Refuse gates on unknown metrics or thresholds no model could meet, naming the config key."""
    known = METRICS_BY_TASK.get(task)
    if known is None:
        raise ConfigError(
            f"model.task: unknown task '{task}' (known: {', '.join(METRICS_BY_TASK)})"
        )
    for bound, thresholds in (("min", gates.min_metrics), ("max", gates.max_metrics)):
        for name, threshold in thresholds.items():
            key = f"gates.{bound}_metrics.{name}"
            if name not in known:
                raise ConfigError(f"{key}: unknown metric for {task} (known: {', '.join(known)})")
            if not math.isfinite(threshold):
                raise ConfigError(f"{key}: threshold must be a finite number, got {threshold}")
            spec = METRICS[name]
            if spec.minimum == 0 and threshold < 0:
                raise ConfigError(f"{key}: {name} is never negative, got {threshold:g}")
            if spec.maximum == 1 and threshold > 1:
                raise ConfigError(
                    f"{key}: {name} is at most 1 (a fraction, not a percentage), got {threshold:g}"
                )
    for key, thresholds in (("min_slice_metrics", gates.min_slice_metrics), ("max_slice_gap", gates.max_slice_gap)):
        for name, threshold in thresholds.items():
            if name not in known:
                raise ConfigError(f"gates.{key}.{name}: unknown metric for {task} (known: {', '.join(known)})")
            if not math.isfinite(threshold):
                raise ConfigError(f"gates.{key}.{name}: threshold must be a finite number, got {threshold}")
            if key == "max_slice_gap" and threshold < 0:
                raise ConfigError(f"gates.max_slice_gap.{name}: a gap is never negative, got {threshold:g}")
    for name in gates.min_metrics.keys() & gates.max_metrics.keys():
        low, high = gates.min_metrics[name], gates.max_metrics[name]
        if low > high:
            raise ConfigError(
                f"gates.min_metrics.{name}: {low:g} is above gates.max_metrics.{name} {high:g}"
            )


def check_gates(metrics: Mapping[str, float], gates: GatesConfig) -> tuple[GateResult, ...]:
    """Every configured bound against the metrics; a metric that was not computed fails its bound."""
    results = []
    for bound, thresholds in (("min", gates.min_metrics), ("max", gates.max_metrics)):
        for name, threshold in thresholds.items():
            value = metrics.get(name)
            if value is None or not math.isfinite(value):
                results.append(GateResult(name, bound, float(threshold), None, False))
                continue
            passed = value >= threshold if bound == "min" else value <= threshold
            results.append(GateResult(name, bound, float(threshold), float(value), passed))
    return tuple(results)


def enforce_gates(results: tuple[GateResult, ...]) -> None:
    """Raise QualityGateFailed naming every failed bound, so the model is not registered."""
    failed = [result.describe() for result in results if not result.passed]
    if failed:
        raise QualityGateFailed(f"quality gate failed: {'; '.join(failed)}", gate_results=results)


@dataclass(frozen=True)
class SliceGateResult:
    """One slice bound (`gates.min_slice_metrics`) or gap (`gates.max_slice_gap`) checked on the judged slices."""

    metric: str
    kind: str  # "slice" (every judged slice meets the bound) or "gap" (best minus worst, per segment column)
    threshold: float
    value: float | None
    passed: bool
    slice: str  # the worst slice ('contract=month-to-month'), or 'best vs worst' for a gap

    def describe(self) -> str:
        """One readable line naming the slice, e.g. 'roc_auc 0.6100 on slice contract=two-year < 0.7'."""
        if self.value is None:
            return f"{self.metric} was not computed on any judged slice ({self.kind} {self.threshold:g})"
        shown = _format_value(self.value, self.threshold)
        if self.kind == "gap":
            relation = "<=" if self.passed else ">"
            return f"{self.metric} gap {shown} between slices {self.slice} {relation} max_slice_gap {self.threshold:g}"
        if higher_is_better(self.metric):
            relation = ">=" if self.passed else "<"
        else:
            relation = "<=" if self.passed else ">"
        return f"{self.metric} {shown} on slice {self.slice} {relation} min_slice_metrics {self.threshold:g}"


def check_slice_gates(report: SliceReport, gates: GatesConfig) -> tuple[SliceGateResult, ...]:
    """Each slice bound against the worst judged slice, each gap within every segment column.

    A bound with no judged slice to check passes: slices too small to judge are reported, not judged.
    For error metrics (lower is better) a `min_slice_metrics` value is a ceiling, as max_metrics is.
    """
    results = []
    for metric, threshold in gates.min_slice_metrics.items():
        worst = report.worst(metric)
        if worst is None:
            results.append(SliceGateResult(metric, "slice", float(threshold), None, True, "none judged"))
            continue
        value = worst.metrics[metric]
        passed = value >= threshold if higher_is_better(metric) else value <= threshold
        results.append(SliceGateResult(metric, "slice", float(threshold), value, passed, worst.label))
    for metric, threshold in gates.max_slice_gap.items():
        widest: SliceGateResult | None = None
        for segment in report.segments:
            scored = [s for s in report.judged(segment) if s.metrics.get(metric) is not None
                      and math.isfinite(s.metrics[metric])]
            if len(scored) < 2:
                continue
            ordered = sorted(scored, key=lambda s: s.metrics[metric], reverse=higher_is_better(metric))
            best, worst = ordered[0], ordered[-1]
            gap = round(abs(best.metrics[metric] - worst.metrics[metric]), 6)
            found = SliceGateResult(metric, "gap", float(threshold), gap, gap <= threshold,
                                    f"{best.label} and {worst.label}")
            if widest is None or gap > (widest.value or 0.0):
                widest = found
        results.append(widest or SliceGateResult(metric, "gap", float(threshold), None, True, "none judged"))
    return tuple(results)


def enforce_slice_gates(results: tuple[SliceGateResult, ...]) -> None:
    """Raise QualityGateFailed naming every failing slice, so the model is not registered."""
    failed = [result.describe() for result in results if not result.passed]
    if failed:
        raise QualityGateFailed(f"slice gate failed: {'; '.join(failed)}", gate_results=results)
