"""What a drift check found, in our terms: per-column results, the verdict, and their JSON.

The engine (`mlops.drift.check`) and the Evidently adapter both answer with a `DriftReport`; the
rule that a window too small gets no verdict (`too_few_rows`) is here, shared by the monitor and
`mlops drift-check`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops.config import MonitoringConfig

# The status of a window too small to judge (`too_few_rows`).
INSUFFICIENT_DATA = "insufficient-data"


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
    # Why there is no verdict (too few rows); None when the columns were checked.
    no_verdict: str | None = None

    @property
    def drifted_columns(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.drifted)

    @property
    def breach(self) -> bool:
        """True when the monitor must raise an event: data drift or degraded performance."""
        return self.dataset_drift or bool(self.performance and self.performance.degraded)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.no_verdict is not None:
            return f"{INSUFFICIENT_DATA}: {self.no_verdict}"
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


def too_few_rows(rows: int, config: MonitoringConfig) -> str | None:
    """Why a window of `rows` rows gets no verdict, or None when it gets one.

    The one rule of the monitor and `drift-check`: below `monitoring.min_rows` the statistics
    say more about the sample than about the population.
    """
    if rows >= config.min_rows:
        return None
    return f"{rows} row{'' if rows == 1 else 's'} in the current window, fewer than monitoring.min_rows ({config.min_rows}): no verdict"


def no_verdict_report(reference_rows: int, current_rows: int, config: MonitoringConfig, reason: str) -> DriftReport:
    """The report of a window too small to judge: no columns checked, no drift claimed."""
    return DriftReport(
        dataset_drift=False, drift_share=0.0, drift_share_threshold=config.drift_share, columns=(),
        rows_reference=reference_rows, rows_current=current_rows, no_verdict=reason,
    )


def report_dict(report: DriftReport) -> dict[str, Any]:
    """The JSON of `drift-check --json`: the verdict and every column; NaN statistics become null."""
    status = "drift" if report.dataset_drift else "no-drift"
    return {
        "status": INSUFFICIENT_DATA if report.no_verdict is not None else status,
        "dataset_drift": report.dataset_drift,
        "drift_share": report.drift_share,
        "drift_share_threshold": report.drift_share_threshold,
        "no_verdict": report.no_verdict,
        "rows_reference": report.rows_reference,
        "rows_current": report.rows_current,
        "drifted_columns": [c.column for c in report.drifted_columns],
        "columns": [
            {
                "column": c.column, "method": c.method,
                "statistic": c.statistic if math.isfinite(c.statistic) else None,
                "threshold": c.threshold, "drifted": c.drifted,
            }
            for c in report.columns
        ],
    }
