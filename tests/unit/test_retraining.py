"""Retraining data: the reference dataset plus labelled live rows, shaped alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlops import audit
from mlops.config import parse_config
from mlops.local.simulate import simulate_churn
from mlops.retraining import (
    answered_by,
    combine_with_labelled,
    cooldown_state,
    last_retrain_finished,
    plan_training_data,
    skip_reason,
    trigger_evidence,
)

CONFIG = parse_config({
    "dataset": {"uri": "x.parquet", "target": "churned", "timestamp": "event_time"},
    "model": {"name": "m"},
})


def _labelled(base: pd.DataFrame) -> pd.DataFrame:
    log = base.drop(columns=["churned", "event_time"]).head(5).copy()
    log["timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    log["label"] = [1, 0, 1, 1, 0]
    log["request_id"] = "r"
    return log


def test_labelled_rows_are_appended_with_label_as_target():
    base = simulate_churn(20, seed=1)
    result = combine_with_labelled(base, _labelled(base), CONFIG)
    combined = result.frame
    assert (result.added, result.dropped) == (5, 0)
    assert len(combined) == 25
    assert list(combined.columns) == list(base.columns)
    assert combined["churned"].tail(5).tolist() == [1, 0, 1, 1, 0]
    assert combined["event_time"].tail(1).iloc[0] == pd.Timestamp("2026-01-01")


def _min_labelled(rows: int):
    return CONFIG.model_copy(update={"retrain": CONFIG.retrain.model_copy(update={"min_labelled_rows": rows})})


def test_a_retrain_without_labelled_traffic_trains_on_the_configured_dataset(tmp_path):
    base = simulate_churn(20, seed=3)
    planned, snapshot = plan_training_data(CONFIG, base, None, [], tmp_path)
    assert (planned.uri, planned.rows, planned.labelled_rows, snapshot) == ("x.parquet", 20, 0, None)
    assert planned.left_out_note() is None


def test_enough_labelled_traffic_becomes_a_snapshot_under_home(tmp_path):
    base = simulate_churn(20, seed=3)
    log = _labelled(base)
    log.loc[1, "label"] = None
    planned, snapshot = plan_training_data(_min_labelled(4), base, log, ["p.parquet"], tmp_path)
    assert planned.uri.startswith(str((tmp_path / "retrain").resolve())) and planned.uri.endswith(".parquet")
    assert (planned.rows, planned.labelled_rows, planned.dropped_rows) == (24, 4, 1)
    assert snapshot is not None and len(snapshot) == 24
    assert planned.unreadable_parts == ("p.parquet",)
    assert planned.left_out_note() == (
        "labelled traffic left out: 1 row(s) breaking the contract {'churned: null': 1}; "
        "1 unreadable log part(s) ['p.parquet']"
    )


def test_too_little_labelled_traffic_keeps_the_dataset_but_counts_what_was_left_out(tmp_path):
    base = simulate_churn(20, seed=3)
    planned, snapshot = plan_training_data(_min_labelled(6), base, _labelled(base), [], tmp_path)
    assert (planned.uri, planned.rows, planned.labelled_rows, snapshot) == ("x.parquet", 20, 0, None)
    assert list(tmp_path.iterdir()) == []  # nothing is written by planning


def test_nothing_labelled_or_missing_feature_keeps_the_reference():
    base = simulate_churn(20, seed=2)
    assert combine_with_labelled(base, pd.DataFrame(), CONFIG).frame is base
    assert combine_with_labelled(base, _labelled(base).drop(columns=["age"]), CONFIG).frame is base


# -- cooldown ------------------------------------------------------------------------------------------

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _record(action: str, minutes_after: float, trigger: dict | None) -> audit.AuditRecord:
    return audit.new_record(
        action, "m", from_version="1", to_version="2", decision={}, reason="r",
        evidence=audit.build_evidence(trigger=trigger), flow_run_id=None, actor="t",
        now=T0 + timedelta(minutes=minutes_after),
    )


def test_only_retrain_decisions_start_a_cooldown():
    manual_deploy = _record(audit.ACTION_PROMOTED, 50, None)
    rollback = _record(audit.ACTION_ROLLED_BACK, 55, trigger_evidence(None))
    retrain = _record(audit.ACTION_REFUSED, 10, trigger_evidence({"event": "mlops.drift.detected"}))
    assert last_retrain_finished([manual_deploy, rollback]) is None
    assert last_retrain_finished([retrain, manual_deploy, rollback]) == T0 + timedelta(minutes=10)
    # A retrain's rollout aborted on live evidence is that retrain's decision: the champion never moved.
    aborted = _record(audit.ACTION_ROLLED_BACK, 60, trigger_evidence({"event": "mlops.drift.detected"}))
    aborted = replace(aborted, evidence={**aborted.evidence, "rollout": {"steps": []}})
    assert last_retrain_finished([retrain, aborted]) == T0 + timedelta(minutes=60)


def test_cooldown_runs_from_the_last_retrain_and_then_lifts():
    records = [
        _record(audit.ACTION_PROMOTED, 0, trigger_evidence({"event": "mlops.drift.detected"})),
        _record(audit.ACTION_REFUSED, 20, trigger_evidence(None)),
    ]
    inside = cooldown_state(records, 60, now=T0 + timedelta(minutes=79))
    assert inside.active and inside.until == T0 + timedelta(minutes=80)
    assert "cooldown" in inside.reason() and "2026-05-01T12:20:00" in inside.reason()
    assert not cooldown_state(records, 60, now=T0 + timedelta(minutes=80)).active
    assert not cooldown_state(records, 0, now=T0 + timedelta(minutes=21)).active
    assert not cooldown_state([], 60, now=T0).active


def test_trigger_evidence_keeps_the_event_and_marks_the_source():
    event = {"event": "mlops.drift.detected", "payload": {"drift_share": 0.6}}
    assert trigger_evidence(event) == {**event, "source": "retrain"}
    assert trigger_evidence(None) == {"event": "manual", "source": "retrain"}


def _drift(minutes_after: float) -> dict:
    # As prefect.yaml's trigger renders it: `event.occurred | string` (a space, not a T).
    return {"event": "mlops.drift.detected", "occurred": str(T0 + timedelta(minutes=minutes_after))}


def test_an_event_older_than_a_decided_retrain_is_answered_whatever_the_cooldown():
    # A storm: events at minutes 1 and 2; a retrain started at 3 and was promoted at 9. A run of
    # the storm that a slow worker starts only at 10 has nothing left to learn.
    first = _record(audit.ACTION_PROMOTED, 9, trigger_evidence(_drift(1), started=T0 + timedelta(minutes=3)))
    reason = answered_by([first], _drift(2))
    assert reason and "already answered" in reason and "promoted (v2)" in reason
    assert skip_reason([first], 0, _drift(2), now=T0 + timedelta(minutes=10)) == reason
    # An event after that retrain started is news to it: it may train (cooldown 0).
    assert answered_by([first], _drift(4)) is None
    assert skip_reason([first], 0, _drift(4), now=T0 + timedelta(minutes=10)) is None
    # Within a cooldown, the cooldown is the reason given.
    assert "cooldown" in skip_reason([first], 60, _drift(4), now=T0 + timedelta(minutes=10))


def test_manual_runs_and_undated_records_are_never_answered():
    old = _record(audit.ACTION_REFUSED, 9, trigger_evidence(_drift(1)))  # written before runs kept their start
    assert answered_by([old], _drift(0)) is None
    started = _record(audit.ACTION_REFUSED, 9, trigger_evidence(_drift(1), started=T0 + timedelta(minutes=3)))
    assert answered_by([started], None) is None
    assert answered_by([started], {"event": "manual"}) is None
    assert answered_by([started], {"occurred": "not a time"}) is None
    # A manual deploy (not a retrain) answers no event.
    assert answered_by([_record(audit.ACTION_PROMOTED, 9, None)], _drift(0)) is None


# -- the retrain's split and its refusals --------------------------------------------------------------

def test_retrain_holds_out_the_newest_share_of_the_labelled_traffic():
    from mlops.contract import infer_contract
    from mlops.evaluation import split_frame
    from mlops.retraining import TrainingData, retrain_config

    base = simulate_churn(1000, seed=3)
    log = _labelled(simulate_churn(400, seed=4))
    log = pd.concat([log] * 80, ignore_index=True).head(400)
    log["timestamp"] = pd.date_range("2026-01-01", periods=400, freq="min", tz="UTC")
    combined = combine_with_labelled(base, log, CONFIG).frame
    config = retrain_config(CONFIG, TrainingData("assembled.parquet", len(combined), 400))
    assert config.dataset.uri == "assembled.parquet" and config.split.method == "time"
    contract = infer_contract(combined, "churned", "event_time", "classification")
    train, holdout = split_frame(combined, contract, config.split, config.model.seed)
    # Exactly the newest half of the labelled rows is held out; the older half is trained on.
    assert len(holdout) == 200
    assert holdout["event_time"].min() >= pd.Timestamp("2026-01-01 03:20")
    assert (train["event_time"] >= pd.Timestamp("2026-01-01")).sum() == 200


def test_too_little_labelled_traffic_keeps_the_configured_split():
    from mlops.retraining import TrainingData, retrain_config

    config = retrain_config(CONFIG, TrainingData("x.parquet", 1010, 10))
    assert config.split == CONFIG.split


def test_a_store_fed_retrain_reads_its_joined_snapshot_as_a_flat_file():
    from mlops.retraining import TrainingData, retrain_config

    stored = CONFIG.model_copy(update={"dataset": CONFIG.dataset.model_copy(update={"feature_service": "churn_model"})})
    # With labelled traffic the snapshot holds the joined features: joining it again would clash.
    snapshot = retrain_config(stored, TrainingData("snapshot.parquet", 1400, 400))
    assert snapshot.dataset.uri == "snapshot.parquet" and snapshot.dataset.feature_service is None
    # Without it the retrain reads the entity frame itself, joined to the store as train does.
    unchanged = retrain_config(stored, TrainingData(stored.dataset.uri, 1000, 0))
    assert unchanged.dataset == stored.dataset


def test_a_gate_failure_becomes_a_refusal_with_no_version():
    from mlops.evaluation import GateResult
    from mlops.retraining import gate_refusal

    gates = (GateResult("roc_auc", "min", 0.75, 0.56, False), GateResult("accuracy", "min", 0.7, 0.71, True))
    record = gate_refusal("m", "quality gate failed: roc_auc", gates, "3", {"event": "mlops.drift.detected"}, "run-1")
    assert record.action == audit.ACTION_REFUSED and record.to_version is None and record.from_version == "3"
    assert [c["passed"] for c in record.decision["checks"]] == [False, True]
    assert record.evidence["trigger"]["source"] == "retrain"
    # It starts the cooldown like any finished retrain.
    assert last_retrain_finished([record]) is not None


# -- labelled rows that break the contract: dropped and counted, never a failed retrain ----------------

NUMBER = "not a finite number within ±1e+100"


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("monthly_charges", 1e308, f"monthly_charges: {NUMBER}"),
        ("monthly_charges", float("inf"), f"monthly_charges: {NUMBER}"),
        ("monthly_charges", -float("inf"), f"monthly_charges: {NUMBER}"),
        ("age", "forty", f"age: {NUMBER}"),
        ("contract", 7, "contract: not a string"),
        ("label", None, "churned: null"),
        ("label", 7, "churned: not a known class"),
        ("label", "1", "churned: not a known class"),
    ],
)
def test_a_labelled_row_breaking_the_contract_is_dropped_and_counted(column, value, reason):
    base = simulate_churn(50, seed=5)
    log = _labelled(base)
    log[column] = log[column].astype(object)
    log.loc[2, column] = value
    combined = combine_with_labelled(base, log, CONFIG)
    assert (combined.added, combined.dropped, combined.drop_reasons) == (4, 1, {reason: 1})
    added = combined.frame.tail(4)
    assert added["age"].tolist() == log["age"].drop(index=2).tolist()
    assert combined.frame.dtypes.to_dict() == base.dtypes.to_dict()


def test_nulls_in_features_are_kept_for_validation_to_weigh():
    base = simulate_churn(50, seed=6)
    log = _labelled(base)
    log["monthly_charges"] = log["monthly_charges"].astype(object)
    log.loc[1, "monthly_charges"] = None
    log.loc[3, "plan"] = None
    combined = combine_with_labelled(base, log, CONFIG)
    assert (combined.added, combined.dropped) == (5, 0)
    assert combined.frame["monthly_charges"].isna().sum() == 1 and combined.frame["plan"].isna().sum() == 1


def test_a_null_boolean_is_dropped_not_read_as_false():
    from mlops.contract import infer_contract
    from mlops.retraining import drop_contract_breaches

    base = pd.DataFrame({"flag": [True, False, True], "y": [0, 1, 0]})
    rows = pd.DataFrame({"flag": [True, None, "yes"], "y": [1, 0, 1]})
    kept, reasons = drop_contract_breaches(rows, infer_contract(base, "y", None, "classification"), base)
    assert kept["flag"].tolist() == [True] and kept["flag"].dtype == bool
    assert reasons == {"flag: not true or false": 2}


def test_regression_labels_must_be_finite_numbers():
    from mlops.contract import infer_contract
    from mlops.retraining import drop_contract_breaches

    base = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 1.5, 2.5]})
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1.0, "high", 1e300, float("nan")]})
    kept, reasons = drop_contract_breaches(rows, infer_contract(base, "y", None, "regression"), base)
    assert kept["y"].tolist() == [1.0]
    assert reasons == {"y: null": 1, f"y: {NUMBER}": 2}


def test_the_filtered_rows_pass_the_validation_the_raw_rows_fail():
    from mlops.contract import infer_contract
    from mlops.validation import validate_frame

    base = simulate_churn(300, seed=7)
    log = _labelled(base)
    for column in ("monthly_charges", "label"):
        log[column] = log[column].astype(object)
    log.loc[0, "monthly_charges"] = 1e308
    log.loc[1, "label"] = 7
    contract = infer_contract(base, "churned", "event_time", "classification")
    combined = combine_with_labelled(base, log, CONFIG)
    assert (combined.added, combined.dropped) == (3, 2)
    assert validate_frame(combined.frame, contract, CONFIG.validation, "filtered").success
    from mlops.retraining import labelled_rows

    raw = pd.concat([base, labelled_rows(base, log, CONFIG)], ignore_index=True)
    assert not validate_frame(raw, contract, CONFIG.validation, "raw").success


def test_the_labelled_window_is_bounded_by_config():
    from mlops.retraining import labelled_since

    config = parse_config({**CONFIG.model_dump(), "retrain": {"labelled_window_days": 7, "max_labelled_rows": 3}})
    now = datetime(2026, 5, 8, tzinfo=UTC)
    assert labelled_since(config, now) == datetime(2026, 5, 1, tzinfo=UTC)
    base = simulate_churn(50, seed=8)
    log = _labelled(base)
    log["timestamp"] = pd.date_range("2026-05-01", periods=5, freq="h", tz="UTC")[::-1]  # newest first
    combined = combine_with_labelled(base, log, config)
    assert combined.added == 3  # the newest three
    assert combined.frame["event_time"].tail(3).max() == pd.Timestamp("2026-05-01 04:00")
    assert combined.frame["event_time"].tail(3).min() == pd.Timestamp("2026-05-01 02:00")
