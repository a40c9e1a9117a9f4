"""`mlops drift-check`'s logic and the stored profile it reads: verdicts, no verdict, damaged files."""

from __future__ import annotations

import pytest

from mlops.config import MonitoringConfig
from mlops.data import write_frame
from mlops.drift import (
    INSUFFICIENT_DATA,
    ReferenceProfile,
    check_datasets,
    profile_frame,
    report_dict,
    too_few_rows,
)
from mlops.errors import DataError
from mlops.simulate import simulate_churn


@pytest.fixture(scope="module")
def profile_bytes() -> bytes:
    return profile_frame(simulate_churn(2000, seed=1), ["age", "monthly_charges"], ["plan"]).to_bytes()


def test_the_min_rows_rule_is_one_function():
    config = MonitoringConfig(min_rows=100)
    assert too_few_rows(100, config) is None
    assert "99 rows" in too_few_rows(99, config) and "monitoring.min_rows (100)" in too_few_rows(99, config)


@pytest.mark.parametrize(("rows", "status"), [(1, INSUFFICIENT_DATA), (99, INSUFFICIENT_DATA), (100, "drift")])
def test_drift_check_gives_no_verdict_below_min_rows_as_the_monitor_does(tmp_path, rows, status):
    write_frame(simulate_churn(2000, seed=1), str(tmp_path / "ref.parquet"))
    write_frame(simulate_churn(rows, "strong", seed=2), str(tmp_path / "cur.parquet"))
    out = report_dict(check_datasets(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet")))
    assert out["status"] == status and out["rows_current"] == rows
    if status == INSUFFICIENT_DATA:
        assert not out["dataset_drift"] and out["columns"] == [] and "min_rows" in out["no_verdict"]


def test_a_missing_column_is_still_an_error_in_a_tiny_window(tmp_path):
    write_frame(simulate_churn(2000, seed=1), str(tmp_path / "ref.parquet"))
    write_frame(simulate_churn(1, seed=2).drop(columns=["age"]), str(tmp_path / "cur.parquet"))
    with pytest.raises(DataError, match="lacks monitored columns: age"):
        check_datasets(str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"))


@pytest.mark.parametrize("keep", [7, 100, 0.5, -30])
def test_a_truncated_profile_is_a_data_error_naming_the_file(tmp_path, profile_bytes, keep):
    path = tmp_path / "profile.npz"
    cut = int(len(profile_bytes) * keep) if isinstance(keep, float) else keep
    path.write_bytes(profile_bytes[:cut])
    with pytest.raises(DataError, match=f"{path}: not a drift reference profile"):
        ReferenceProfile.load(path)


def test_a_damaged_profile_member_is_a_data_error_naming_the_file_and_column(tmp_path, profile_bytes):
    loaded = ReferenceProfile.load(profile_bytes)
    damaged = bytearray(profile_bytes)
    # Flip a byte inside the first numeric array: the zip directory still opens, the member's CRC fails.
    damaged[len(profile_bytes) // 4] ^= 0xFF
    path = tmp_path / "profile.npz"
    path.write_bytes(bytes(damaged))
    profile = ReferenceProfile.load(path)
    with pytest.raises(DataError, match=f"{path}: damaged drift reference profile, column 'age'"):
        profile.column("age")
    assert loaded.column("age").values.size == 2000
