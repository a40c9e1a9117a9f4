"""`mlops drift-check`: one ad-hoc drift check of two datasets (or a stored profile and a dataset).

Outside the registry there is no contract to say which columns to watch, so every column of the
reference is checked, as numeric when its type is numeric and as categorical otherwise (dates and
times are skipped, as Evidently skips them). Bad input is a one-line DataError or ConfigError.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlops import drift
from mlops.config import MonitoringConfig, load_monitoring_config
from mlops.drift_profile import CATEGORICAL, NUMERIC, ReferenceProfile, build_profile
from mlops.drift_window import open_window
from mlops.errors import DataError

PROFILE_SUFFIX = ".npz"


def load_reference(uri: str) -> ReferenceProfile:
    """A stored profile (.npz, local) as it is; a dataset is profiled on every column it has."""
    if uri.endswith(PROFILE_SUFFIX):
        if not Path(uri).is_file():
            raise DataError(f"{uri}: file not found")
        return ReferenceProfile.load(uri)  # a damaged file is a DataError naming it
    window = open_window(uri)
    kinds = {name: window.kind_of(name) for name in window.names}
    numeric = [n for n, k in kinds.items() if k == NUMERIC]
    categorical = [n for n, k in kinds.items() if k == CATEGORICAL]
    try:
        return build_profile(window, numeric, categorical)
    except ValueError as err:
        raise DataError(f"{uri}: {err}") from None


def run_drift_check(reference_uri: str, current_uri: str, config_path: str | None = None) -> drift.DriftReport:
    """Every reference column against the current data, with the engine's (Evidently's) decisions."""
    config = load_monitoring_config(config_path) if config_path else MonitoringConfig()
    profile = load_reference(reference_uri)
    window = open_window(current_uri)
    numeric = [n for n in profile.names if profile.kinds[n] == NUMERIC]
    categorical = [n for n in profile.names if profile.kinds[n] == CATEGORICAL]
    missing = [n for n in [*numeric, *categorical] if n not in window.names]
    if missing:
        raise DataError(f"{current_uri}: current data lacks monitored columns: {', '.join(missing)}")
    reason = drift.too_few_rows(window.rows, config)
    if reason is not None:
        return drift.no_verdict_report(profile.rows, window.rows, config, reason)
    try:
        return drift.check_drift(profile, window, numeric, categorical, config)
    except ValueError as err:
        raise DataError(f"{current_uri}: {err}") from None


def report_dict(report: drift.DriftReport) -> dict[str, Any]:
    """The JSON of `drift-check --json`: the verdict and every column; NaN statistics become null."""
    status = "drift" if report.dataset_drift else "no-drift"
    return {
        "status": drift.INSUFFICIENT_DATA if report.no_verdict is not None else status,
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
