"""The bundled dataset and the drift simulator are deterministic and drift as advertised."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.data import fingerprint_frame, read_frame
from mlops.local.simulate import TARGET, TIMESTAMP, simulate_churn

REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = simulate_churn(2000, seed=3), simulate_churn(2000, seed=3), simulate_churn(2000, seed=4)
    assert fingerprint_frame(a) == fingerprint_frame(b)
    assert fingerprint_frame(a) != fingerprint_frame(c)


def test_bundled_dataset_is_the_simulator_output():
    bundled = read_frame(str(REPO / "data" / "churn.parquet"))
    assert fingerprint_frame(bundled) == fingerprint_frame(simulate_churn(20_000, seed=0))


def test_shape_types_and_missing_values():
    frame = simulate_churn(5000, seed=1)
    assert len(frame) == 5000
    assert frame[TARGET].isin([0, 1]).all()
    assert 0.1 < frame[TARGET].mean() < 0.5
    assert frame[TIMESTAMP].is_monotonic_increasing
    assert 0 < frame["total_charges"].isna().mean() < 0.03
    assert set(frame["contract"]) == {"month-to-month", "one-year", "two-year"}


@pytest.mark.parametrize(("level", "min_shift"), [("mild", 4.0), ("strong", 20.0)])
def test_drift_moves_the_distribution(level, min_shift):
    base = simulate_churn(20_000, seed=5)
    drifted = simulate_churn(20_000, level, seed=5)
    assert drifted["monthly_charges"].mean() - base["monthly_charges"].mean() > min_shift
    assert drifted["support_calls"].mean() > base["support_calls"].mean()
    share = (drifted["contract"] == "month-to-month").mean()
    assert share > (base["contract"] == "month-to-month").mean()


def test_rejects_non_positive_rows():
    with pytest.raises(ValueError):
        simulate_churn(0)
