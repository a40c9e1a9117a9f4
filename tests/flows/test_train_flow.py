"""The `train` flow against a real Prefect server and a temporary MLflow store: one test per gate branch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from flows.train import train
from mlops.config import PipelineConfig, parse_config
from mlops.data import write_frame
from mlops.errors import ConfigError, DataValidationFailed, QualityGateFailed
from mlops.evaluation import BehaviourTestFailed
from mlops.local.simulate import simulate_churn
from mlops.registry import ALIAS_CHAMPION, Registry
from tests.conftest import CHAMPION_MODEL

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "churn-test"


def make_config(data_uri: str, **sections) -> PipelineConfig:
    raw = {
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {
            "name": MODEL,
            "task": "classification",
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 50},
        },
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100, "rules": [{"column": "age", "min": 18, "max": 100}]},
        "gates": {"min_metrics": {"roc_auc": 0.6}},
    }
    raw.update(sections)
    return parse_config(raw)


@pytest.fixture
def churn_uri(tmp_path) -> str:
    return write_frame(simulate_churn(3000, seed=11), str(tmp_path / "churn.parquet"))


def _versions(store: str, model: str = MODEL) -> list:
    return MlflowClient(tracking_uri=store, registry_uri=store).search_model_versions(f"name = '{model}'")


def test_first_training_registers_challenger_with_lineage(mlflow_store, churn_uri):
    state = train(config=make_config(churn_uri), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.status, result.model_version, result.aliases) == ("registered", "1", ["challenger"])
    assert {"roc_auc", "accuracy", "f1"} <= set(result.metrics)

    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    version = client.get_model_version(MODEL, "1")
    assert version.tags["data_fingerprint"] == result.data_fingerprint
    assert version.tags["prefect_flow_run_id"] == str(state.state_details.flow_run_id)
    assert version.tags["contract_source"].startswith("inferred")
    assert json.loads(version.tags["validation"])["success"] is True
    assert version.tags["lib.scikit-learn"]
    assert len(version.tags["config_hash"]) == 16

    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"plots/confusion_matrix.png", "plots/roc_curve.png", "plots/feature_importance.png"} <= logged
    assert client.list_artifacts(result.run_id, "validation")

    registry = Registry(mlflow_store)
    reference = registry.load_reference(registry.get_version(MODEL, "1"))
    assert len(reference) > 2000 and set(reference.columns) >= {"churned", "plan", "age"}
    profile = registry.load_reference_profile(registry.get_version(MODEL, "1"))
    assert profile is not None and profile.rows == len(reference)
    assert {"plan", "age", "prediction"} <= set(profile.names) and "churned" not in profile.names
    contract = registry.load_contract(registry.get_version(MODEL, "1"))
    assert contract.target == "churned" and "plan" in contract.categorical_features

    # The Prefect server holds the validation report and the run summary as markdown artifacts.
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert "data-validation" in by_key and "train-churn-test" in by_key
    assert "roc_auc" in by_key["train-churn-test"].data


def test_same_data_and_config_give_identical_predictions(mlflow_store, churn_uri):
    config = make_config(churn_uri)
    assert train(config=config, return_state=True).is_completed()
    assert train(config=config, return_state=True).is_completed()
    registry = Registry(mlflow_store)
    first, second = registry.load_model(MODEL, "1"), registry.load_model(MODEL, "2")
    sample = simulate_churn(500, seed=99).drop(columns=["churned", "event_time"])
    assert np.array_equal(first.predict_proba(sample), second.predict_proba(sample))
    tags = [registry.get_version(MODEL, v).tags for v in ("1", "2")]
    assert tags[0]["data_fingerprint"] == tags[1]["data_fingerprint"]
    assert tags[0]["config_hash"] == tags[1]["config_hash"]


def test_validation_failure_ends_failed_and_registers_nothing(mlflow_store, tmp_path):
    frame = simulate_churn(3000, seed=12)
    frame.loc[:200, "age"] = 150  # breaks the declared rule age <= 100
    uri = write_frame(frame, str(tmp_path / "bad.parquet"))
    state = train(config=make_config(uri), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DataValidationFailed)
    assert "'age'" in str(error) and "expect_column_values_to_be_between" in str(error)
    assert _versions(mlflow_store) == []
    # The failed run keeps the validation evidence.
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert client.list_artifacts(runs[0].info.run_id, "validation")


def test_quality_gate_failure_registers_nothing(mlflow_store, churn_uri):
    config = make_config(churn_uri, gates={"min_metrics": {"roc_auc": 0.999}})
    state = train(config=config, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, QualityGateFailed)
    assert "roc_auc" in str(error) and "0.999" in str(error)
    assert _versions(mlflow_store) == []


CALLS_LOWER_CHURN = {"name": "calls-lower-churn", "kind": "directional", "column": "support_calls", "delta": 2,
                     "direction": "decrease"}


def test_a_failed_behavioural_test_refuses_the_run_with_its_cases_logged(mlflow_store, churn_uri):
    # Support calls raise churn in the simulator: expecting them to lower it fails on any real model.
    passing = {"name": "region-free", "kind": "invariance", "column": "region", "permute": True, "max_flip_rate": 0.2}
    config = make_config(churn_uri, behaviour={"tests": [passing, CALLS_LOWER_CHURN]})
    state = train(config=config, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, BehaviourTestFailed) and error.exit_code == 4
    assert str(error).startswith("behavioural test failed: 'calls-lower-churn' (directional): support_calls +2")
    assert "region-free" not in str(error)
    assert _versions(mlflow_store) == []
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    [run] = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert run.info.status == "FAILED" and run.data.tags["behaviour"] == "failed"
    report = Registry(mlflow_store).read_run_json(run.info.run_id, "behaviour/report.json")
    assert report["passed"] is False
    assert [(t["name"], t["kind"], t["passed"]) for t in report["tests"]] == [
        ("region-free", "invariance", True), ("calls-lower-churn", "directional", False)]
    cases = report["tests"][1]["failing_cases"]
    assert 0 < len(cases) <= 10 and all(c["after"] > c["before"] for c in cases)


def test_passing_behavioural_tests_are_in_the_result(mlflow_store, churn_uri):
    raises = {**CALLS_LOWER_CHURN, "name": "calls-raise-churn", "direction": "increase"}
    result = train(config=make_config(churn_uri, behaviour={"tests": [raises]}))
    assert [(t.name, t.passed) for t in result.behaviour] == [("calls-raise-churn", True)]
    assert Registry(mlflow_store).read_run_json(result.run_id, "behaviour/report.json")["passed"] is True


def test_a_behavioural_test_on_an_unknown_column_is_refused_before_any_run(mlflow_store, churn_uri):
    config = make_config(churn_uri, behaviour={"tests": [{**CALLS_LOWER_CHURN, "column": "shoe_size"}]})
    state = train(config=config, return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConfigError)
    assert str(error).startswith("behaviour.tests.0.column: unknown feature column 'shoe_size' in test 'calls-lower-churn'")
    assert MlflowClient(tracking_uri=mlflow_store).get_experiment_by_name(MODEL) is None


def _with_data(raw: dict, uri: str) -> PipelineConfig:
    return parse_config({**raw, "dataset": {**raw["dataset"], "uri": uri}})


def test_new_data_is_checked_against_the_champion_contract(champion_store, tmp_path):
    store, raw = champion_store  # v1 of CHAMPION_MODEL is the champion
    frame = simulate_churn(3000, seed=13)
    frame["plan"] = "enterprise"  # a category the champion never saw
    uri = write_frame(frame, str(tmp_path / "new.parquet"))
    state = train(config=_with_data(raw, uri), return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DataValidationFailed)
    assert "'plan'" in str(error)
    assert [str(v.version) for v in _versions(store, CHAMPION_MODEL)] == ["1"]


def test_second_training_records_champion_contract_source(champion_store, tmp_path):
    store, raw = champion_store
    uri = write_frame(simulate_churn(3000, seed=14), str(tmp_path / "next.parquet"))
    purpose = "Which customers leave next cycle."
    result = train(config=_with_data({**raw, "card": {"purpose": purpose}}, uri), return_state=True).result()
    assert result.model_version == "2"
    assert result.contract_source == "champion v1"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    # MLflow's registered-models page describes the model with the config's card purpose.
    assert client.get_registered_model(CHAMPION_MODEL).description == purpose
    assert str(client.get_model_version_by_alias(CHAMPION_MODEL, "challenger").version) == "2"
    assert str(client.get_model_version_by_alias(CHAMPION_MODEL, ALIAS_CHAMPION).version) == "1"


def test_regression_task(mlflow_store, tmp_path):
    frame = simulate_churn(2000, seed=15).drop(columns=["churned"]).dropna(subset=["total_charges"])
    uri = write_frame(frame, str(tmp_path / "reg.csv"))
    config = parse_config(
        {
            "dataset": {"uri": uri, "target": "total_charges", "timestamp": "event_time"},
            "model": {"name": "charges-reg", "task": "regression", "estimator": "sklearn.linear_model.Ridge"},
            "validation": {"min_rows": 100, "contract": {"null_rate_margin": 0.05}},
            "gates": {"min_metrics": {"r2": 0.5}, "max_metrics": {"rmse": 5000}},
        }
    )
    state = train(config=config, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert {"rmse", "mae", "r2"} <= set(result.metrics)
    artifacts = {a.path for a in MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store).list_artifacts(result.run_id, "plots")}
    assert "plots/residuals.png" in artifacts


# -- the demo's regressor: configs/spend.yaml on its bundled data ---------------------------------

REPO = Path(__file__).resolve().parents[2]


def _spend_config(**model) -> PipelineConfig:
    from mlops.catalogue import load_catalogue

    raw = load_catalogue(REPO / "configs").get("spend-regressor").raw
    return parse_config({**raw, "dataset": {**raw["dataset"], "uri": str(REPO / "data" / "spend.parquet")},
                         "model": {**raw["model"], **model}})


def test_bundled_regressor_clears_its_gates_comfortably(mlflow_store):
    config = _spend_config()
    state = train(config=config, return_state=True)
    assert state.is_completed(), state.message
    metrics = state.result().metrics
    gates = config.gates
    assert metrics["r2"] > gates.min_metrics["r2"] + 0.05
    assert metrics["rmse"] < gates.max_metrics["rmse"] - 1.5 and metrics["mae"] < gates.max_metrics["mae"] - 1.0
    registry = Registry(mlflow_store)
    profile = registry.load_reference_profile(registry.get_version("spend-regressor", "1"))
    assert "prediction" in profile.names and "monthly_spend" not in profile.names


def test_bundled_regressor_gates_refuse_a_model_that_learned_nothing(mlflow_store):
    state = train(config=_spend_config(estimator="sklearn.dummy.DummyRegressor", params={}),
                  return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, QualityGateFailed)
    assert all(f"{metric} " in str(error) for metric in ("r2", "rmse", "mae"))
    assert _versions(mlflow_store, "spend-regressor") == []


@pytest.mark.parametrize("promotion, message", [
    ({"significance": "mcnemar"}, "promotion.significance: mcnemar"),
    ({"primary_metric": "roc_auc"}, "promotion.primary_metric: unknown metric 'roc_auc' for regression"),
])
def test_a_promotion_policy_deploy_would_refuse_fails_training_before_anything_is_registered(
    mlflow_store, promotion, message
):
    config = _spend_config()
    config = config.model_copy(update={"promotion": config.promotion.model_copy(update=promotion)})
    state = train(config=config, return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConfigError) and str(error).startswith(message)
    assert _versions(mlflow_store, "spend-regressor") == []
