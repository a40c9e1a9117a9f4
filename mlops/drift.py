"""Evidently adapter: per-column data drift, prediction drift and the dataset verdict.

Evidently 0.7 is imported lazily and read only here; the rest of the project sees `DriftReport`.
The decision per column is Evidently's own test status (include_tests=True), never re-derived,
so "drifted" means exactly what Evidently means by it for the configured method and threshold.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.config import MonitoringConfig

# Evidently labels its metrics with these type names; we check them instead of reading by position.
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift statistic and Evidently's verdict on it."""

    column: str
    method: str
    statistic: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class PerformanceDrift:
    """The champion's live metric on labelled traffic against its evaluation metric."""

    metric: str
    reference: float
    current: float
    higher_is_better: bool
    max_drop: float

    @property
    def delta(self) -> float:
        return self.current - self.reference

    @property
    def degraded(self) -> bool:
        drop = -self.delta if self.higher_is_better else self.delta
        return drop > self.max_drop


@dataclass(frozen=True)
class DriftReport:
    """What one drift check found, in our terms."""

    dataset_drift: bool
    drift_share: float
    drift_share_threshold: float
    columns: tuple[ColumnDrift, ...]
    rows_reference: int
    rows_current: int
    prediction: ColumnDrift | None = None
    performance: PerformanceDrift | None = None
    report_location: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.drifted)

    @property
    def breach(self) -> bool:
        """True when the monitor must raise an event: data drift or degraded performance."""
        return self.dataset_drift or bool(self.performance and self.performance.degraded)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        names = ", ".join(c.column for c in self.drifted_columns) or "none"
        verdict = "dataset drift" if self.dataset_drift else "no dataset drift"
        line = (
            f"{verdict}: {len(self.drifted_columns)} of {len(self.columns)} columns drifted "
            f"(share {self.drift_share:.2f}, threshold {self.drift_share_threshold:.2f}): {names}"
        )
        if self.performance is not None:
            p = self.performance
            line += f"; {p.metric} {p.current:.4f} vs {p.reference:.4f}{' (degraded)' if p.degraded else ''}"
        return line

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted_columns"] = [c.column for c in self.drifted_columns]
        out["breach"] = self.breach
        return out


def _evidently_method(name: str | None) -> str | None:
    # Our config names are Evidently's stattest names; None keeps Evidently's size-based default.
    return name


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    config: MonitoringConfig,
    html_path: str | Path | None = None,
) -> DriftReport:
    """Compare `current` with `reference` on the given columns with Evidently's DataDriftPreset."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [*numeric, *categorical]
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise ValueError(f"current data lacks monitored columns: {', '.join(missing)}")
    definition = DataDefinition(numerical_columns=list(numeric), categorical_columns=list(categorical))
    preset = DataDriftPreset(
        columns=columns,
        drift_share=config.drift_share,
        num_method=_evidently_method(config.num_method),
        cat_method=_evidently_method(config.cat_method),
        per_column_method=dict(config.per_column_method) or None,
        threshold=config.threshold,
        per_column_threshold=dict(config.per_column_threshold) or None,
    )
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    if html_path is not None:
        snapshot.save_html(str(html_path))
    return _read_snapshot(snapshot.dict(), len(reference), len(current), config.drift_share)


def _read_snapshot(raw: dict[str, Any], rows_reference: int, rows_current: int, share_threshold: float) -> DriftReport:
    failed_metric_ids = {
        t["metric_config"]["metric_id"]
        for t in raw.get("tests", [])
        if t.get("status") == "FAIL" and "metric_config" in t
    }
    columns: list[ColumnDrift] = []
    share: float | None = None
    for metric in raw["metrics"]:
        kind = metric.get("config", {}).get("type")
        if kind == _VALUE_DRIFT:
            cfg = metric["config"]
            columns.append(
                ColumnDrift(
                    column=str(cfg["column"]),
                    method=str(cfg["method"]),
                    statistic=float(metric["value"]),
                    threshold=float(cfg["threshold"]),
                    drifted=metric["id"] in failed_metric_ids,
                )
            )
        elif kind == _DRIFTED_COUNT:
            share = float(metric["value"]["share"])
    if share is None or not columns:
        raise RuntimeError("Evidently's report lacks the drift metrics this adapter reads; check its version")
    return DriftReport(
        dataset_drift=share >= share_threshold,
        drift_share=share,
        drift_share_threshold=share_threshold,
        columns=tuple(columns),
        rows_reference=rows_reference,
        rows_current=rows_current,
    )


def reference_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of the training data (all of it when small enough) kept as the reference."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)


def report_to_json(report: DriftReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)
