"""The `monitor` and `retrain` flows against a real Prefect server and a temporary MLflow store.

Every test starts from a private copy of the session's trained and promoted champion
(`champion_store` in tests/conftest.py) instead of training its own.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.monitor import monitor
from mlops.config import PipelineConfig, parse_config
from mlops.data import write_frame
from mlops.events import DRIFT_DETECTED
from mlops.local.simulate import simulate_churn
from mlops.serving.prediction_log import label_columns, model_log_uri
from tests.conftest import CHAMPION_MODEL

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = CHAMPION_MODEL


@pytest.fixture
def champion(champion_store) -> PipelineConfig:
    """v1 trained and promoted (a copy of the session's template), with an empty prediction log."""
    return parse_config(champion_store[1])


def partition_of(config: PipelineConfig) -> str:
    """The model's partition of its prediction log, where the serving app writes its rows."""
    return model_log_uri(config.serving.prediction_log_uri, config.model.name)


def _log_traffic(log_uri: str, frame, labels: list | None = None, target: str = "churned", model: str = MODEL) -> str:
    """Log `frame`'s features as one answered request (as the serving app writes it), with `labels`
    when given; then add a 7-byte part file to today's partition and return its path."""
    from mlops.serving.prediction_log import (
        label_columns,
        label_writer,
        logged_feature_columns,
        prediction_columns,
        prediction_writer,
    )
    from mlops.serving.scoring import Scores

    features = frame.drop(columns=[target, "event_time"])
    records = features.to_dict("records")
    at = time.time()
    writer = prediction_writer(log_uri)
    numeric = frozenset(features.select_dtypes("number").columns)
    if target == "churned":
        scores = Scores(frame[target].tolist(), [[0.5, 0.5]] * len(frame), [0, 1])
    else:  # a regressor answers amounts, with no probabilities
        scores = Scores(frame[target].round(0).tolist())
    writer.append(prediction_columns("req", records, scores, model, "1", "champion", "champion", at), len(records),
                  logged_feature_columns(numeric))
    writer.flush()
    (partition,) = Path(log_uri).glob("date=*")
    if labels is not None:
        label_log = label_writer(log_uri)
        label_log.append(label_columns([("req", i, label) for i, label in enumerate(labels)], at + 1), len(labels))
        label_log.flush()
    bad = partition / "part-bad.parquet"
    bad.write_bytes(b"PAR1abc")
    return str(bad)


def _drift_events(flow_run_started: float) -> list:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[DRIFT_DETECTED]), resource=EventResourceFilter(id=[f"mlops.model.{MODEL}"])
    )
    deadline = time.monotonic() + 20
    with get_client(sync_client=True) as client:
        while True:
            found = [e for e in client.read_events(filter=event_filter, limit=50).events
                     if e.occurred.timestamp() >= flow_run_started - 1]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def _wait_for_sentinel(timeout: float = 30.0) -> None:
    """Emit a sentinel event in this process and wait until the server returns it."""
    import uuid

    from prefect import get_client
    from prefect.events import emit_event
    from prefect.events.filters import EventFilter, EventResourceFilter

    resource_id = f"mlops.test.sentinel.{uuid.uuid4()}"
    assert emit_event("mlops.test.sentinel", resource={"prefect.resource.id": resource_id}) is not None
    event_filter = EventFilter(resource=EventResourceFilter(id=[resource_id]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while not client.read_events(filter=event_filter, limit=1).events:
            assert time.monotonic() < deadline, "the sentinel event never arrived"
            time.sleep(0.2)


def test_drifted_window_emits_the_event_and_logs_the_trend(champion, champion_store, tmp_path):
    started = time.time()
    drifted = write_frame(simulate_churn(2000, "strong", seed=52), str(tmp_path / "drifted.parquet"))
    result = monitor(config=champion, current_uri=drifted)
    assert result.status == "breach" and result.dataset_drift
    assert result.event == DRIFT_DETECTED
    assert {"monthly_charges", "support_calls"} <= set(result.drifted_columns)
    uri = champion_store[0]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(result.run_id)
    assert run.data.metrics["dataset_drift"] == 1.0 and run.data.metrics["drift_share"] >= 0.5
    assert {a.path for a in client.list_artifacts(result.run_id, "drift")} >= {"drift/report.html", "drift/report.json"}
    events = _drift_events(started)
    assert len(events) == 1
    payload = events[0].payload
    assert payload["champion_version"] == "1" and "monthly_charges" in payload["drifted_columns"]


def test_undrifted_window_emits_nothing(champion, tmp_path):
    started = time.time()
    same = write_frame(simulate_churn(2000, seed=53), str(tmp_path / "same.parquet"))
    result = monitor(config=champion, current_uri=same)
    assert result.status == "ok" and not result.dataset_drift and result.event is None
    # Events travel asynchronously: a sentinel sent after the run, through the same client, is
    # stored after anything the run emitted, so once it is readable a wrong event would be too.
    _wait_for_sentinel()
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    with get_client(sync_client=True) as client:
        # Events carry the emitter's clock, this process's: no slack, or the drift event the test
        # before this one waited for (well under a second ago) would count.
        names = [e.event for e in client.read_events(filter=EventFilter(event=EventNameFilter(prefix=["mlops.drift", "mlops.performance"])), limit=50).events
                 if e.occurred.timestamp() >= started]
    assert names == []


def test_too_few_rows_give_no_verdict(champion, tmp_path):
    small = write_frame(simulate_churn(50, "strong", seed=54), str(tmp_path / "small.parquet"))
    state = monitor(config=champion, current_uri=small, return_state=True)
    result = state.result()
    assert result.status == "insufficient-data" and result.event is None
    # The runs list says so: a window too small to judge is not a window without drift.
    assert state.is_completed() and state.name == "NoVerdict"


def test_an_unreadable_log_part_is_skipped_named_and_the_window_still_checked(champion, tmp_path):
    bad = _log_traffic(partition_of(champion), simulate_churn(300, seed=55))
    result = monitor(config=champion)
    assert result.status in ("ok", "breach") and result.rows == 300
    assert result.unreadable_parts == (bad,) and result.to_dict()["unreadable_part_count"] == 1
    # A window anchored after the logged traffic holds none of it, whatever window_hours says.
    later = monitor(config=champion, window_hours=24, window_start=datetime.now(UTC) + timedelta(seconds=1))
    assert later.status == "insufficient-data" and later.rows == 0
def test_rows_the_log_dead_lettered_are_reported(champion, tmp_path):
    from mlops.serving.prediction_log import label_writer

    # A label row past the door's checks (as a future bug might let through): the writer
    # isolates it in a dead-letter file, and the monitor's result says how many rows went there.
    labels = label_writer(partition_of(champion))
    labels.append(label_columns([("a", 0, 1), ("b", 2**64 - 1, 1)], time.time()), 2)
    labels.flush()
    result = monitor(config=champion)
    assert result.status == "insufficient-data" and result.dead_letter_rows == 1
    assert result.to_dict()["dead_letter_rows"] == 1


def test_retrain_trains_on_reference_plus_labelled_traffic_and_deploys(champion_store):
    from flows.retrain import retrain
    from mlops.registry import Registry

    store, raw = champion_store
    config = parse_config(raw)
    trigger = {"event": "mlops.drift.detected", "payload": {"drift_share": 0.6, "drifted_columns": ["monthly_charges"]}}
    result = retrain(config=config, trigger=trigger, cooldown_minutes=0)
    assert result.model_version == "2"
    assert result.status in ("promoted", "refused")
    # With no labelled traffic the configured dataset is used as is.
    assert result.data_uri == config.dataset.uri
    records = Registry(store).read_audit(MODEL)
    assert records[-1].to_version == "2"
    assert records[-1].evidence["trigger"]["payload"]["drifted_columns"] == ["monthly_charges"]
    assert records[-1].evidence["trigger"]["source"] == "retrain"

    # A second trigger right after it falls inside the cooldown: nothing is trained or registered.
    again = retrain(config=config, trigger=trigger, cooldown_minutes=30)
    assert again.status == "skipped" and again.model_version is None
    assert "cooldown" in again.reason
    assert [str(v.version) for v in Registry(store).list_versions(MODEL)] == ["1", "2"]


def test_a_retrained_model_that_misses_a_gate_is_a_refusal_not_a_failure(champion_store):
    from flows.retrain import retrain
    from mlops.registry import Registry

    store, raw = champion_store
    strict = parse_config({**raw, "gates": {"min_metrics": {"roc_auc": 0.999}}})
    state = retrain(config=strict, trigger={"event": "mlops.drift.detected"}, cooldown_minutes=0, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result.status == "refused" and result.model_version is None and "roc_auc" in result.reason
    registry = Registry(store)
    assert [str(v.version) for v in registry.list_versions(MODEL)] == ["1"]
    record = registry.read_audit(MODEL)[-1]
    assert record.action == "refused" and record.to_version is None and record.from_version == "1"
    assert registry.version_by_alias(MODEL, "champion").version == "1"


def test_labelled_rows_breaking_the_contract_are_dropped_and_the_retrain_goes_on(champion_store, tmp_path):
    from flows.retrain import retrain

    raw = champion_store[1]
    log_uri = str(tmp_path / "log")
    traffic = simulate_churn(300, seed=64)
    traffic["monthly_charges"] = traffic["monthly_charges"].astype(object)
    traffic.loc[0, "monthly_charges"] = 1e308  # accepted by /predict before serving applied the bound
    labels = traffic["churned"].tolist()
    labels[1] = 7  # a class the model has never seen
    config = parse_config({**raw, "serving": {"prediction_log_uri": log_uri}, "retrain": {"min_labelled_rows": 50}})
    bad = _log_traffic(partition_of(config), traffic, labels)
    result = retrain(config=config, trigger={"event": "mlops.drift.detected"}, cooldown_minutes=0)
    assert result.model_version == "2" and result.status in ("promoted", "refused")
    assert (result.labelled_rows, result.dropped_rows) == (298, 2)
    assert result.drop_reasons == {
        "monthly_charges: not a finite number within ±1e+100": 1, "churned: not a known class": 1,
    }
    assert result.unreadable_parts == [bad]


# -- the regressor: live rmse (lower is better), a numeric prediction, numeric labels -------------


@pytest.fixture
def spend_champion(spend_champion_store) -> PipelineConfig:
    """v1 of the regressor trained and promoted (a copy of the session's template)."""
    return parse_config(spend_champion_store[1])


def _model_events(model: str, name: str, since: float, timeout: float = 20.0) -> list:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(event=EventNameFilter(name=[name]), resource=EventResourceFilter(id=[f"mlops.model.{model}"]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = [e for e in client.read_events(filter=event_filter, limit=50).events if e.occurred.timestamp() >= since - 1]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def test_regressor_concept_drift_is_a_performance_breach_on_rmse(spend_champion, tmp_path):
    from mlops.events import PERFORMANCE_DEGRADED
    from mlops.local.simulate import DriftSpec, simulate_spend

    started = time.time()
    # The same customers, but what they spend no longer follows the features the way it did.
    turned = write_frame(simulate_spend(2000, DriftSpec(concept=1.0), seed=56), str(tmp_path / "turned.parquet"))
    result = monitor(config=spend_champion, current_uri=turned)
    assert not result.dataset_drift and result.drifted_columns == ()
    perf = result.performance
    assert perf["metric"] == "rmse" and perf["degraded"] is True
    assert perf["current"] > perf["reference"] + 2.0  # a larger error is the degradation
    assert result.status == "breach" and result.event == PERFORMANCE_DEGRADED
    (event,) = _model_events(spend_champion.model.name, PERFORMANCE_DEGRADED, started)
    assert event.payload["performance"]["metric"] == "rmse" and event.payload["performance"]["degraded"] is True


def test_regressor_calm_labelled_window_is_ok_and_covariate_drift_is_data_drift(spend_champion, tmp_path):
    from mlops.local.simulate import simulate_spend

    calm = write_frame(simulate_spend(2000, seed=57), str(tmp_path / "calm.parquet"))
    result = monitor(config=spend_champion, current_uri=calm)
    assert result.status == "ok" and result.event is None and not result.prediction_drift
    assert result.performance["metric"] == "rmse" and result.performance["degraded"] is False
    assert abs(result.performance["current"] - result.performance["reference"]) < 2.0

    shifted = write_frame(simulate_spend(2000, "strong", seed=58), str(tmp_path / "shifted.parquet"))
    result = monitor(config=spend_champion, current_uri=shifted)
    assert result.status == "breach" and result.event == DRIFT_DETECTED and result.dataset_drift
    assert {"monthly_charges", "support_calls"} <= set(result.drifted_columns)
    assert result.prediction_drift  # the prediction is a numeric column of the check, and it moved


def test_regressor_monitor_reads_numeric_labels_from_the_log_and_retrain_learns_from_them(spend_champion_store):
    from flows.retrain import retrain
    from mlops.local.simulate import simulate_spend
    from mlops.registry import Registry

    store, raw = spend_champion_store
    config = parse_config({**raw, "retrain": {"min_labelled_rows": 50}})
    traffic = simulate_spend(400, seed=59)
    labels = [float(v) for v in traffic["monthly_spend"]]
    labels[3] = float("nan")  # a lost label: left out of training, counted
    bad = _log_traffic(partition_of(config), traffic, labels, "monthly_spend", config.model.name)

    checked = monitor(config=config)
    assert checked.rows == 400 and checked.unreadable_parts == (bad,) and checked.performance["metric"] == "rmse"
    assert checked.performance["current"] < checked.performance["reference"] + 2.0

    result = retrain(config=config, trigger={"event": "mlops.drift.detected"}, cooldown_minutes=0)
    assert result.model_version == "2" and result.status in ("promoted", "refused")
    assert (result.labelled_rows, result.dropped_rows) == (399, 1)
    assert result.drop_reasons == {"monthly_spend: null": 1}
    trained = Registry(store).get_version(config.model.name, "2")
    assert {"rmse", "mae", "r2"} <= set(json.loads(trained.tags["metrics"]))


def test_another_models_rows_never_enter_the_window_or_the_retrain_data(champion, tmp_path):
    # Two models share one prediction_log_uri (as every catalogue model does by default): B's
    # labelled, drifted rows sit in the same log, in B's partition.
    from prefect import flow

    from tasks.retraining import assemble_training_data

    other = champion.model_copy(update={"model": champion.model.model_copy(update={"name": "other-model"})})
    ours = simulate_churn(300, seed=65)
    theirs = simulate_churn(500, "strong", seed=66)
    _log_traffic(partition_of(champion), ours, ours["churned"].tolist())
    _log_traffic(partition_of(other), theirs, theirs["churned"].tolist())
    assert partition_of(other) != partition_of(champion)
    result = monitor(config=champion)
    assert result.rows == 300
    config = champion.model_copy(update={"retrain": champion.retrain.model_copy(update={"min_labelled_rows": 50})})

    @flow
    def assemble():
        return assemble_training_data(config, True, tmp_path)

    assert assemble().labelled_rows == 300
