"""Data drift: Evidently 0.7's per-column decisions, computed by our own engine on every row.

- `statistics`: the statistics on whole columns (sorted values, category counts), as Evidently computes them
- `profile`: the reference side, summarised once at training time and stored with the model (.npz)
- `window`: the current side, read one column at a time (a DataFrame, or a Parquet file streamed)
- `methods`: Evidently's stat tests (threshold, direction) and which one applies to a column
- `check`: `check_drift` (profile against window, every column) and `check_datasets` (`mlops drift-check`)
- `report`: `DriftReport`, the no-verdict rule and the JSON of `drift-check`
- `evidently_adapter`: the one module that imports Evidently (the HTML report people read)
"""

from __future__ import annotations

from mlops.drift.check import check_datasets, check_drift
from mlops.drift.evidently_adapter import evidently_report, sample_html_report
from mlops.drift.profile import ReferenceProfile, build_profile, profile_frame, reference_sample
from mlops.drift.report import (
    INSUFFICIENT_DATA,
    ColumnDrift,
    DriftReport,
    PerformanceDrift,
    report_dict,
    too_few_rows,
)
from mlops.drift.window import FrameWindow, ParquetWindow

__all__ = [
    "INSUFFICIENT_DATA",
    "ColumnDrift",
    "DriftReport",
    "FrameWindow",
    "ParquetWindow",
    "PerformanceDrift",
    "ReferenceProfile",
    "build_profile",
    "check_datasets",
    "check_drift",
    "evidently_report",
    "profile_frame",
    "reference_sample",
    "report_dict",
    "sample_html_report",
    "too_few_rows",
]
