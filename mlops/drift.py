"""Per-column data drift and the dataset verdict: a fast full-data engine, and the Evidently adapter.

`check_drift` decides. It computes, on every row of the current window, the statistic and the
decision Evidently 0.7 would make for each column (same default method by reference size, column
type and number of distinct values; same thresholds and comparison direction), from a reference
profile computed once at training time (`mlops.drift_profile`) and the statistics in
`mlops.drift_stats`. tests/unit/test_drift_consistency.py holds it to Evidently's own results.

`run_drift_report` is the Evidently adapter, kept for the human HTML report: Evidently is imported
lazily and read only here. Its per-column decision is Evidently's own test status, never re-derived.
`sample_html_report` runs it on a bounded, seeded sample and labels the page as such.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops import drift_stats as st
from mlops.config import MonitoringConfig
from mlops.drift_profile import CATEGORICAL, NUMERIC, ReferenceProfile
from mlops.drift_window import WindowColumns

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


def sample_html_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    config: MonitoringConfig,
    html_path: str | Path,
) -> dict[str, Any]:
    """Evidently's HTML report on a seeded sample of each side, labelled as a sample.

    The page is for people; its numbers may differ a little from the decision, which comes from
    `check_drift` on every row. Returns what was sampled, for the report's details.
    """
    ref = reference_sample(reference, config.report_sample_rows, config.seed)
    cur = reference_sample(current, config.report_sample_rows, config.seed)
    run_drift_report(ref, cur, numeric, categorical, config, html_path)
    sampled = {
        "rows_current": len(cur), "of_current": len(current),
        "rows_reference": len(ref), "of_reference": len(reference), "seed": config.seed,
    }
    _label_sample(Path(html_path), sampled)
    return sampled


def _label_sample(path: Path, sampled: dict[str, Any]) -> None:
    banner = (
        '<div style="padding:12px;margin:8px;border:2px solid #b45309;background:#fef3c7;'
        'font-family:sans-serif">'
        f"<b>Sample report.</b> Evidently ran on a seeded sample (seed {sampled['seed']}): "
        f"{sampled['rows_current']:,} of {sampled['of_current']:,} current rows and "
        f"{sampled['rows_reference']:,} of {sampled['of_reference']:,} reference rows. "
        "The drift decisions of this check come from the full-data engine on every row "
        "(drift/report.json), not from this page.</div>"
    )
    html = path.read_text(encoding="utf-8")
    at = html.find("<body")
    at = html.find(">", at) + 1 if at >= 0 else 0
    path.write_text(html[:at] + banner + html[at:], encoding="utf-8")


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
