"""The Evidently adapter (mlops.drift.evidently_adapter): decisions come from Evidently and land in our DriftReport."""

from __future__ import annotations

import pytest

from mlops.config import MonitoringConfig
from mlops.drift import PerformanceDrift, evidently_report
from mlops.local.simulate import simulate_churn

NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls"]
CATEGORICAL = ["contract", "plan"]


@pytest.fixture(scope="module")
def reference():
    return simulate_churn(3000, seed=1)


def test_same_population_has_no_dataset_drift(reference):
    report = evidently_report(reference, simulate_churn(3000, seed=2), NUMERIC, CATEGORICAL, MonitoringConfig())
    assert not report.dataset_drift
    assert report.drifted_columns == ()
    assert {c.column for c in report.columns} == set(NUMERIC + CATEGORICAL)
    assert not report.breach


def test_strong_covariate_shift_is_detected_on_the_shifted_columns(reference, tmp_path):
    html = tmp_path / "report.html"
    current = simulate_churn(3000, "strong", seed=3)
    report = evidently_report(reference, current, NUMERIC, CATEGORICAL, MonitoringConfig(), html_path=html)
    drifted = {c.column for c in report.drifted_columns}
    assert {"monthly_charges", "support_calls", "contract"} <= drifted
    assert "age" not in drifted and "plan" not in drifted
    assert report.dataset_drift and report.breach
    assert report.drift_share == pytest.approx(len(drifted) / len(report.columns))
    assert html.stat().st_size > 10_000
    by_name = {c.column: c for c in report.columns}
    charges = by_name["monthly_charges"]
    assert charges.statistic > charges.threshold  # a distance: drifted means above the threshold
    assert "monthly_charges" in report.summary()


def test_configured_method_and_threshold_are_used(reference):
    config = MonitoringConfig(num_method="ks", cat_method="chisquare", threshold=0.01, drift_share=0.9)
    report = evidently_report(reference, simulate_churn(3000, "strong", seed=4), NUMERIC, CATEGORICAL, config)
    assert {c.threshold for c in report.columns} == {0.01}
    assert any("K-S" in c.method or "ks" in c.method.lower() for c in report.columns)
    assert report.drifted_columns and not report.dataset_drift  # share below 0.9


def test_missing_monitored_column_is_named(reference):
    with pytest.raises(ValueError, match="monthly_charges"):
        evidently_report(reference, reference.drop(columns=["monthly_charges"]), NUMERIC, CATEGORICAL, MonitoringConfig())


@pytest.mark.parametrize(
    ("higher", "reference", "current", "degraded"),
    [(True, 0.80, 0.78, False), (True, 0.80, 0.70, True), (False, 10.0, 10.4, False), (False, 10.0, 11.0, True)],
)
def test_performance_drift_respects_direction(higher, reference, current, degraded):
    perf = PerformanceDrift("m", reference, current, higher_is_better=higher, max_drop=0.05 if higher else 0.5)
    assert perf.degraded is degraded
