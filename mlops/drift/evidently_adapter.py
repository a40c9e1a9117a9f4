"""Evidently adapter: its DataDriftPreset report, read into our `DriftReport`, and its HTML page.

Evidently 0.7 is imported lazily and read only here. The decision per column is Evidently's own
test status (include_tests=True), never re-derived. Monitoring uses it for the page people read,
on a bounded, seeded sample of each side (`sample_html_report`); decisions come from
`mlops.drift.check_drift` on every row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.config import MonitoringConfig
from mlops.drift.profile import reference_sample
from mlops.drift.report import ColumnDrift, DriftReport

if TYPE_CHECKING:  # `mlops drift-check` on Parquet never imports pandas: it starts faster
    import pandas as pd

# Evidently labels its metrics with these type names; we check them instead of reading by position.
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"


def evidently_report(
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
        # Our config names are Evidently's stattest names; None keeps Evidently's size-based default.
        num_method=config.num_method,
        cat_method=config.cat_method,
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
    evidently_report(ref, cur, numeric, categorical, config, html_path)
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
