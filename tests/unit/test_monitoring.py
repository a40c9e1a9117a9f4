"""One monitoring check as pure steps: window, prediction drift, live performance, breach event."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from mlops import events, monitoring
from mlops.config import parse_config
from mlops.contract import infer_contract
from mlops.drift import ReferenceProfile
from mlops.local.simulate import simulate_churn
from mlops.training import fit_pipeline


@pytest.fixture(scope="module")
def setup():
    config = parse_config({
        "dataset": {"uri": "x.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {"name": "mon", "params": {"max_iter": 30}},
    })
    reference = simulate_churn(3000, seed=41)
    contract = infer_contract(reference, "churned", "event_time", "classification")
    model = fit_pipeline(reference, contract, config.model)
    return config, reference, contract, model


def test_log_window_ends_now():
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    window = monitoring.log_window("s3://b/log", 6, now)
    assert (window.start, window.end) == (datetime(2026, 1, 2, 6, tzinfo=UTC), now)
    assert "s3://b/log" in window.describe()


def test_features_from_log_reads_the_contract_features_and_names_a_missing_one(setup):
    _, reference, contract, _ = setup
    log = reference.drop(columns=["churned"])
    assert list(monitoring.features_from_log(log, contract).columns) == contract.feature_names
    with pytest.raises(ValueError, match="'age'"):
        monitoring.features_from_log(log.drop(columns=["age"]), contract)


def test_unchanged_population_is_quiet(setup):
    config, reference, contract, model = setup
    report = monitoring.check_window(reference, simulate_churn(3000, seed=42), contract, model, config, {"roc_auc": 0.8})
    assert not report.breach
    assert report.prediction is not None and not report.prediction.drifted
    assert report.performance is not None and not report.performance.degraded
    assert monitoring.breach_event(report, "mon", "1", monitoring.Window("d.parquet")) is None


def test_strong_drift_breaches_and_shapes_the_event(setup):
    config, reference, contract, model = setup
    current = simulate_churn(3000, "strong", seed=43)
    report = monitoring.check_window(reference, current, contract, model, config, {"roc_auc": 0.8})
    assert report.dataset_drift
    assert "prediction" not in {c.column for c in report.columns}
    assert report.prediction is not None and report.prediction.drifted  # churn predictions move too
    name, resource, payload = monitoring.breach_event(report, "mon", "3", monitoring.Window("d.parquet"))
    assert name == events.DRIFT_DETECTED
    assert resource["prefect.resource.id"] == "mlops.model.mon"
    assert payload["champion_version"] == "3" and "monthly_charges" in payload["drifted_columns"]
    metrics = monitoring.monitoring_metrics(report)
    assert metrics["dataset_drift"] == 1.0 and "drift.monthly_charges" in metrics


def test_concept_drift_alone_degrades_performance(setup):
    config, reference, contract, model = setup
    # Same inputs as the reference population, but labels follow the drifted concept.
    from mlops.local.simulate import DriftSpec

    current = simulate_churn(3000, DriftSpec(concept=1.0), seed=44)
    report = monitoring.check_window(reference, current, contract, model, config, {"roc_auc": 0.82})
    assert report.performance is not None and report.performance.degraded
    if not report.dataset_drift:
        event = monitoring.breach_event(report, "mon", "1", monitoring.Window("d"))
        assert event is not None and event[0] == events.PERFORMANCE_DEGRADED


def test_stored_profile_gives_the_decisions_of_the_reference_it_came_from(setup, tmp_path):
    config, reference, contract, model = setup
    current = simulate_churn(3000, "strong", seed=45)
    stored = ReferenceProfile.load(monitoring.reference_profile(reference, model, contract).to_bytes())
    with_profile = monitoring.check_window(reference, current, contract, model, config, {}, profile=stored)
    rebuilt = monitoring.check_window(reference, current, contract, model, config, {})
    assert with_profile.columns == rebuilt.columns and with_profile.prediction == rebuilt.prediction
    assert with_profile.dataset_drift and with_profile.details["engine"] == "full-data"


def test_html_report_is_drawn_from_a_labelled_sample_of_the_window(setup, tmp_path):
    config, reference, contract, model = setup
    config = config.model_copy(update={"monitoring": config.monitoring.model_copy(update={"report_sample_rows": 500})})
    html = tmp_path / "report.html"
    report = monitoring.check_window(reference, simulate_churn(2000, seed=46), contract, model, config, {}, html)
    sampled = report.details["html_sample"]
    assert (sampled["rows_current"], sampled["of_current"]) == (500, 2000)
    assert (sampled["rows_reference"], sampled["of_reference"]) == (500, 3000)
    assert "Sample report." in html.read_text(encoding="utf-8")
    assert report.rows_current == 2000  # the decision still covers every row


def _log(reference, routes: list[str]):
    """Prediction-log rows of the first len(routes) reference rows, one request each, on the given routes."""
    n = len(routes)
    log = reference.drop(columns=["churned", "event_time"]).head(n).reset_index(drop=True)
    log["request_id"] = [f"r{i}" for i in range(n)]
    log["row"] = 0
    log["route"] = routes
    log["prediction"] = [i % 2 for i in range(n)]
    return log


def test_window_frame_leaves_shadow_rows_out_and_joins_labels_by_request_and_row(setup):
    _, reference, contract, _ = setup
    log = _log(reference, ["champion", "shadow", "champion", "canary"])
    labelled = log.loc[[2, 0]].assign(label=[0, 1])  # out of order: joined by key, not position
    frame = monitoring.window_frame(log, labelled, contract)
    assert len(frame) == 3  # the shadow scoring of r1 is not a second row of traffic
    assert frame[monitoring.PREDICTION_COLUMN].tolist() == [0, 0, 1]
    assert frame["churned"].tolist()[:2] == [1, 0] and pd.isna(frame["churned"].iloc[2])
    assert list(frame.columns) == [*contract.feature_names, monitoring.PREDICTION_COLUMN, "churned"]


def test_window_frame_without_labels_or_rows_has_no_target(setup):
    _, reference, contract, _ = setup
    no_labels = monitoring.window_frame(_log(reference, ["champion", "champion"]), pd.DataFrame(), contract)
    assert len(no_labels) == 2 and "churned" not in no_labels.columns
    empty = monitoring.window_frame(_log(reference, []), pd.DataFrame(), contract)
    assert list(empty.columns) == [*contract.feature_names, monitoring.PREDICTION_COLUMN] and len(empty) == 0
