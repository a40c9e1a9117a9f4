"""`mlops drift-check`'s logic and the stored profile it reads: verdicts, no verdict, damaged files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
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
from mlops.local.simulate import simulate_churn


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


def test_a_stored_profile_is_read_like_any_local_file(tmp_path, profile_bytes, monkeypatch):
    import os

    from mlops.drift.check import load_profile

    good = tmp_path / "good.npz"
    good.write_bytes(profile_bytes)
    assert load_profile(str(good)).column("age").values.size == 2000
    with pytest.raises(DataError, match="missing.npz: file not found"):
        load_profile(str(tmp_path / "missing.npz"))
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="pipe.npz: is a FIFO"):
        load_profile(str(fifo))  # refused at once: a FIFO would block the read for ever
    monkeypatch.setenv("MLOPS_MAX_DATASET_BYTES", str(len(profile_bytes) - 1))
    with pytest.raises(DataError, match="MLOPS_MAX_DATASET_BYTES"):
        load_profile(str(good))


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


def test_parquet_columns_read_as_the_frame_gives_them(tmp_path):
    # The Parquet reader hands numpy Arrow's buffers directly (no pandas): nulls, NaN, infinities
    # and every integer and float width must come out as pandas' own reading of the file does.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops.drift import FrameWindow, ParquetWindow

    table = pa.table({
        "ints_with_nulls": pa.array([3, None, 1, 2, None, 7] * 50, pa.int64()),
        "int8": pa.array([5, -1, 0, 2, 2, 9] * 50, pa.int8()),
        "uint32": pa.array([5, 1, 0, 2, 2, 4_000_000_000] * 50, pa.uint32()),
        "floats": pa.array([1.5, None, float("nan"), float("inf"), -2.0, 0.0] * 50, pa.float64()),
        "half": pa.array(np.array([1.5, 2.0, -3.0, 0.5, 8.0, 1.0] * 50, dtype=np.float16)),
        "all_null": pa.array([None] * 300, pa.float32()),
    })
    pq.write_table(table, tmp_path / "w.parquet", row_group_size=64)
    streamed = ParquetWindow(tmp_path / "w.parquet", batch_rows=40)
    in_memory = FrameWindow(pd.read_parquet(tmp_path / "w.parquet"))
    for name in table.column_names:
        ours, theirs = streamed.numeric(name), in_memory.numeric(name)
        np.testing.assert_array_equal(ours.values, theirs.values)
        assert ours.integer == theirs.integer, name


def test_a_cold_drift_check_imports_no_heavy_library(tmp_path):
    # Start-up is most of a cold `mlops drift-check`: the default methods need neither scipy nor
    # pandas, and nothing of the training, tracking or orchestration stack.
    write_frame(simulate_churn(2000, seed=1), str(tmp_path / "ref.parquet"))
    write_frame(simulate_churn(1500, "strong", seed=2), str(tmp_path / "cur.parquet"))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mlops.cli", "drift-check", "--reference",
         str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet"), "--json"],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "drift"
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    imported = {name.split(".")[0] for name in modules}
    heavy = {"scipy", "pandas", "evidently", "sklearn", "mlflow", "prefect", "great_expectations", "fastapi", "boto3",
             "pydantic_settings"}
    assert imported & heavy == set()
    # Arrow's compute module alone costs 0.1 s of import: nulls are dropped through the bitmap.
    assert "pyarrow.compute" not in modules and "pyarrow" in imported


def test_parquet_categories_count_as_the_frame_counts_them(tmp_path):
    # Strings are counted by their dictionary codes: nulls, several row groups and dictionaries,
    # stored categoricals, booleans and bytes must count as pandas' reading of the file does.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops.drift import FrameWindow, ParquetWindow

    rng = np.random.default_rng(4)
    words = rng.choice(["red", "green", "blue", None, "grey"], 1000).tolist()
    table = pa.table({
        "strings": pa.array(words, pa.string()),
        "large": pa.array(words, pa.large_string()),
        "all_null": pa.array([None] * 1000, pa.string()),
        "stored_categorical": pa.array(words, pa.string()).dictionary_encode(),
        "flags": pa.array(rng.choice([True, False, None], 1000).tolist(), pa.bool_()),
        "raw": pa.array([w.encode() if w else None for w in words], pa.binary()),
    })
    pq.write_table(table, tmp_path / "w.parquet", row_group_size=300)
    streamed = ParquetWindow(tmp_path / "w.parquet", batch_rows=128)
    in_memory = FrameWindow(pd.read_parquet(tmp_path / "w.parquet"))
    for name in table.column_names:
        theirs = {k: v for k, v in in_memory.categorical(name).counts.items() if v}
        assert dict(streamed.categorical(name).counts) == theirs, name


@pytest.mark.parametrize("arrow_type", ["int8", "int32", "uint16", "int64", "float32", "float64"])
def test_non_null_values_are_read_from_the_buffers_with_any_offset(arrow_type):
    import pyarrow as pa

    from mlops.drift.window import _non_null_values

    raw = [1, None, 3, 4, None, 6, 7, None, 9, 10, 11]
    array = pa.array(raw, type=getattr(pa, arrow_type)())
    for start in (0, 1, 2, 5):
        piece = array.slice(start, 5)
        expected = [v for v in raw[start : start + 5] if v is not None]
        assert _non_null_values(piece).tolist() == expected
    assert _non_null_values(pa.array([2, 3], type=getattr(pa, arrow_type)()).slice(1)).tolist() == [3]
