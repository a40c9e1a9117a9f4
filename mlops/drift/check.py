"""The drift check: every monitored column of the current window against the reference profile,
with the statistic and the decision Evidently 0.7 would make (`mlops.drift.methods`), on every row.

Evidently itself is not imported; tests/unit/test_drift_consistency.py holds the engine to
Evidently's own results. `check_drift` is the engine the monitor calls; `check_datasets` is
`mlops drift-check`: two datasets (or a stored profile and a dataset) outside the registry, where
no contract says which columns to watch, so every column of the reference is checked, as numeric
when its type is numeric and as categorical otherwise (dates and times are skipped, as Evidently
skips them). Bad input there is a one-line DataError or ConfigError.
"""

from __future__ import annotations

from mlops.config import MonitoringConfig, load_monitoring_config
from mlops.drift import statistics as st
from mlops.drift.methods import STAT_TESTS, configured_method, default_method
from mlops.drift.profile import ReferenceProfile, build_profile
from mlops.drift.report import ColumnDrift, DriftReport, no_verdict_report, too_few_rows
from mlops.drift.window import (
    CATEGORICAL,
    NUMERIC,
    WindowColumns,
    map_columns,
    open_window,
    read_column,
)
from mlops.errors import DataError

PROFILE_SUFFIX = ".npz"


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


def check_drift(
    profile: ReferenceProfile,
    window: WindowColumns,
    numeric: list[str],
    categorical: list[str],
    config: MonitoringConfig,
    workers: int | None = None,
) -> DriftReport:
    """Every column of the full current window against the stored reference profile.

    Columns run in parallel threads (`map_columns`); each thread holds one column of the window
    and one of the reference at a time, which bounds memory.
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
        return column_drift(name, kinds[name], profile.column(name), read_column(window, name, kinds[name]), config)

    results = map_columns(one, columns, workers)
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


def load_profile(uri: str) -> ReferenceProfile:
    """A stored profile (.npz, local) as it is; a dataset is profiled on every column it has."""
    if uri.endswith(PROFILE_SUFFIX):
        from mlops.files import read_regular_file
        from mlops.settings import Settings

        # The reader every local dataset goes through: a FIFO or device is refused, not waited on,
        # and the file is capped like a dataset. A damaged file is a DataError naming it.
        payload = read_regular_file(uri, Settings().max_dataset_bytes, DataError, limit_name="MLOPS_MAX_DATASET_BYTES")
        return ReferenceProfile.load(payload, name=uri)
    window = open_window(uri)
    kinds = {name: window.kind_of(name) for name in window.names}
    numeric = [n for n, k in kinds.items() if k == NUMERIC]
    categorical = [n for n, k in kinds.items() if k == CATEGORICAL]
    try:
        return build_profile(window, numeric, categorical)
    except ValueError as err:
        raise DataError(f"{uri}: {err}") from None


def check_datasets(reference_uri: str, current_uri: str, config_path: str | None = None) -> DriftReport:
    """Every reference column against the current data, with the engine's (Evidently's) decisions."""
    config = load_monitoring_config(config_path) if config_path else MonitoringConfig()
    profile = load_profile(reference_uri)
    window = open_window(current_uri)
    numeric = [n for n in profile.names if profile.kinds[n] == NUMERIC]
    categorical = [n for n in profile.names if profile.kinds[n] == CATEGORICAL]
    missing = [n for n in [*numeric, *categorical] if n not in window.names]
    if missing:
        raise DataError(f"{current_uri}: current data lacks monitored columns: {', '.join(missing)}")
    reason = too_few_rows(window.rows, config)
    if reason is not None:
        return no_verdict_report(profile.rows, window.rows, config, reason)
    try:
        return check_drift(profile, window, numeric, categorical, config)
    except ValueError as err:
        raise DataError(f"{current_uri}: {err}") from None
