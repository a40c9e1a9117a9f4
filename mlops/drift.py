"""Per-column data drift and the dataset verdict, decided on every row of the window.

`check_drift` computes, for each column, the statistic and the decision Evidently 0.7 would make
(same default method by reference size, column type and number of distinct values; same
thresholds and comparison direction), from a reference profile computed once at training time
(`mlops.drift_profile`) and the statistics in `mlops.drift_stats`; Evidently itself is not
imported. tests/unit/test_drift_consistency.py holds it to Evidently's own results. The Evidently
adapter, kept for the human HTML report, is `mlops.drift_evidently`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from mlops import drift_stats as st
from mlops.config import MonitoringConfig
from mlops.drift_profile import CATEGORICAL, NUMERIC, ReferenceProfile
from mlops.drift_window import WindowColumns


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


INSUFFICIENT_DATA = "insufficient-data"


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


def reference_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of the training data (all of it when small enough) kept as the reference."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)


def report_to_json(report: DriftReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


# -- the full-data engine -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatTest:
    """One of Evidently's stat tests: its default threshold, the kinds it takes, its direction."""

    name: str
    default_threshold: float
    kinds: frozenset[str]
    # p-value tests drift when the value is small; distances when it is large.
    p_value: bool
    # Evidently compares ks with <=, the other p-value tests with <, every distance with >=.
    inclusive: bool
    compute: Callable[..., float]

    def drifted(self, value: float, threshold: float) -> bool:
        if self.p_value:
            return value <= threshold if self.inclusive else value < threshold
        return value >= threshold


_BOTH = frozenset({NUMERIC, CATEGORICAL})
STAT_TESTS: dict[str, StatTest] = {
    t.name: t
    for t in (
        StatTest("wasserstein", 0.1, frozenset({NUMERIC}), False, True, st.wasserstein_norm),
        StatTest("ks", 0.05, frozenset({NUMERIC}), True, True, st.ks_pvalue),
        StatTest("anderson", 0.1, frozenset({NUMERIC}), True, False, st.anderson_pvalue),
        StatTest("jensenshannon", 0.1, _BOTH, False, True, st.jensenshannon),
        StatTest("psi", 0.1, _BOTH, False, True, st.psi),
        StatTest("kl_div", 0.1, _BOTH, False, True, st.kl_div),
        StatTest("hellinger", 0.1, _BOTH, False, True, st.hellinger),
        StatTest("chisquare", 0.05, frozenset({CATEGORICAL}), True, False, st.chisquare_pvalue),
        StatTest("z", 0.05, frozenset({CATEGORICAL}), True, False, st.z_pvalue),
    )
}


def configured_method(column: str, kind: str, config: MonitoringConfig) -> str | None:
    """Evidently's precedence: per-column method, then the method for the column's kind, else None."""
    if column in config.per_column_method:
        return config.per_column_method[column]
    return config.num_method if kind == NUMERIC else config.cat_method


def default_method(kind: str, reference: st.Column, current: st.Column, reference_rows: int) -> str:
    """Evidently's default test: by reference size, column kind and distinct values in both samples.

    `reference_rows` counts the reference after dropping NaN, as Evidently's rule does.
    """
    distinct = st.few_distinct(reference, current, limit=5)
    if reference_rows <= 1000:
        if kind == NUMERIC and distinct > 5:
            return "ks"
        # Evidently applies its categorical tests to numeric columns with at most five values.
        return "chisquare" if distinct > 2 else "z"
    if kind == NUMERIC and distinct > 5:
        return "wasserstein"
    return "jensenshannon"


def column_drift(
    column: str, kind: str, reference: st.Column, current: st.Column, config: MonitoringConfig
) -> ColumnDrift:
    """One column's statistic and decision, as Evidently's ValueDrift would give them."""
    if reference.size == 0:
        raise ValueError(f"column '{column}' is empty in the reference data (after dropping NaN)")
    if current.size == 0:
        raise ValueError(f"column '{column}' is empty in the current data (after dropping NaN)")
    method = configured_method(column, kind, config)
    if method is None:
        test = STAT_TESTS[default_method(kind, reference, current, reference.size)]
    else:
        test = STAT_TESTS[method]
        if kind not in test.kinds:
            raise ValueError(f"drift method '{method}' does not apply to {kind} column '{column}'")
    threshold = config.per_column_threshold.get(column, config.threshold)
    threshold = test.default_threshold if threshold is None else threshold
    value = test.compute(reference, current)
    return ColumnDrift(column, test.name, float(value), float(threshold), test.drifted(value, threshold))


def _read_current(window: WindowColumns, column: str, kind: str) -> st.Column:
    return window.numeric(column) if kind == NUMERIC else window.categorical(column)


def check_drift(
    profile: ReferenceProfile,
    window: WindowColumns,
    numeric: list[str],
    categorical: list[str],
    config: MonitoringConfig,
    workers: int | None = None,
) -> DriftReport:
    """Every column of the full current window against the stored reference profile.

    Columns run in parallel threads (sorting and Parquet reads release the GIL); each thread
    holds one column of the window and one of the reference at a time, which bounds memory.
    """
    columns = [*numeric, *categorical]
    missing = [c for c in columns if c not in window.names]
    if missing:
        raise ValueError(f"current data lacks monitored columns: {', '.join(missing)}")
    unknown = [c for c in columns if c not in profile.kinds]
    if unknown:
        raise ValueError(f"the reference profile lacks monitored columns: {', '.join(unknown)}")
    kinds = {c: NUMERIC for c in numeric} | {c: CATEGORICAL for c in categorical}
    clash = [c for c in columns if profile.kinds[c] != kinds[c]]
    if clash:
        raise ValueError(f"columns profiled as another kind than asked: {', '.join(clash)}")

    def one(name: str) -> ColumnDrift:
        return column_drift(name, kinds[name], profile.column(name), _read_current(window, name, kinds[name]), config)

    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(columns) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = tuple(pool.map(one, columns))
    else:
        results = tuple(one(c) for c in columns)
    drifted = sum(c.drifted for c in results)
    share = drifted / len(results) if results else 0.0
    return DriftReport(
        dataset_drift=share >= config.drift_share,
        drift_share=share,
        drift_share_threshold=config.drift_share,
        columns=results,
        rows_reference=profile.rows,
        rows_current=window.rows,
        details={"engine": "full-data", "evidently_compatible": "0.7"},
    )
