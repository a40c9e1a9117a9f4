"""A store-fed model through the flows: train joins its entity frame to the feature service point in
time, records the service and its views' versions, and deploy and monitor see the joined frame.

Real parts: a Feast repository under tmp_path (tests/feature_repo.py), applied under the test's
MLOPS_HOME, a Prefect test server and a temporary MLflow store.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.deploy import deploy
from flows.monitor import monitor
from flows.train import train
from mlops import datasets, features
from mlops.config import PipelineConfig, parse_config
from mlops.data import fingerprint_frame, read_frame, write_frame
from mlops.promotion import promotion_holdout
from mlops.registry import Registry
from tests.feature_repo import MARKER, labelled_balances, make_repo
from tests.timing import LENIENT_PROMOTION

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "churn-from-store"


@pytest.fixture
def store_fed(mlflow_store, tmp_path, monkeypatch) -> tuple[PipelineConfig, pd.DataFrame]:
    """A config whose data is an entity frame joined to `scorer`; the repository applied under MLOPS_HOME."""
    rows, entity, _ = labelled_balances(300, seed=12)
    repo = make_repo(tmp_path, rows)
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)
    uri = write_frame(entity, str(tmp_path / "labels.parquet"))
    config = parse_config({
        "dataset": {"uri": uri, "target": "churned", "timestamp": "event_time",
                    "feature_service": "scorer", "feature_repo": str(repo)},
        "model": {"name": MODEL, "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                  "params": {"max_iter": 30}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"min_metrics": {"roc_auc": 0.7}},
        "rollback": {"enabled": False},
        "promotion": LENIENT_PROMOTION,
        "serving": {"prediction_log_uri": str(tmp_path / "predictions")},
        "retrain": {"cooldown_minutes": 0},
    })
    return config, entity


def test_training_from_the_store_records_the_service_its_views_and_the_joined_frame(store_fed, mlflow_store, tmp_path):
    config, entity = store_fed
    state = train(config=config, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    joined = datasets.read_training_frame(config.dataset, tmp_path / "home")
    store = features.open_store(config.dataset.feature_repo, tmp_path / "home")

    tags = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store).get_model_version(MODEL, "1").tags
    assert tags["feature_service"] == "scorer" and tags["feature_repo"] == config.dataset.feature_repo
    assert tags["feature_view.balance"] == features.view_version(store.get_feature_view("balance"))
    # data_fingerprint is the joined frame's (what the model learnt from), not the entity frame's.
    assert tags["data_fingerprint"] == result.data_fingerprint == joined.fingerprint
    assert tags["entity_fingerprint"] == fingerprint_frame(entity) != tags["data_fingerprint"]
    assert tags["data_uri"] == config.dataset.uri

    # The model learnt from the joined balance alone: not the customer id, never a marker.
    registry = Registry(mlflow_store)
    version = registry.get_version(MODEL, "1")
    assert registry.load_contract(version).feature_names == ["balance"]
    reference = registry.load_reference(version)
    assert "customer_id" not in reference.columns and reference["balance"].max() < MARKER
    # A leaked marker would give the label away (roc_auc 1.0); the honest balance explains it well.
    assert 0.7 <= result.metrics["roc_auc"] < 0.99


def test_deploy_and_monitor_of_a_store_fed_model_see_the_joined_frame(store_fed, mlflow_store, tmp_path):
    config, entity = store_fed
    assert train(config=config, return_state=True).is_completed()
    deployed = deploy(config=config, watch_seconds=0)
    # The promotion holdout is cut from the joined frame: the newest quarter of its labels.
    assert deployed.status == "promoted", deployed.reason
    joined = datasets.read_training_frame(config.dataset, tmp_path / "home").frame
    registry = Registry(mlflow_store)
    contract = registry.load_contract(registry.get_version(MODEL, "1"))
    expected = promotion_holdout(joined, contract, config)
    assert deployed.holdout["rows"] == len(expected) == int(np.ceil(0.25 * len(entity)))
    assert deployed.holdout["fingerprint"] == fingerprint_frame(expected)

    # The monitor's reference is the joined training frame: a window of the same balances is calm,
    # one whose balances moved is drift in `balance` (the entity frame has no such column at all).
    calm = write_frame(joined.drop(columns="churned").sample(400, random_state=1), str(tmp_path / "calm.parquet"))
    result = monitor(config=config, current_uri=calm)
    assert result.status == "ok" and not result.dataset_drift, result
    moved = joined.drop(columns="churned").sample(400, random_state=2)
    moved["balance"] = moved["balance"] + 600.0
    shifted = write_frame(moved, str(tmp_path / "shifted.parquet"))
    result = monitor(config=config, current_uri=shifted)
    assert result.dataset_drift and result.drifted_columns == ("balance",), result


def _log_labelled_traffic(config: PipelineConfig, balances: np.ndarray, labels: list[int]) -> None:
    """Answered requests with the looked-up `balance` and their labels, as the serving app logs them."""
    from mlops.serving import prediction_log as log
    from mlops.serving.scoring import Scores

    log_uri = log.model_log_uri(config.serving.prediction_log_uri, config.model.name)
    records = [{"balance": float(b)} for b in balances]
    at = time.time()
    writer = log.prediction_writer(log_uri)
    scores = Scores(labels, [[0.5, 0.5]] * len(labels), [0, 1])
    writer.append(log.prediction_columns("req", records, scores, MODEL, "1", "champion", "champion", at),
                  len(records), log.logged_feature_columns(frozenset({"balance"})))
    writer.flush()
    labels_log = log.label_writer(log_uri)
    labels_log.append(log.label_columns([("req", i, label) for i, label in enumerate(labels)], at + 1), len(labels))
    labels_log.flush()


def test_a_store_fed_retrain_learns_from_the_joined_frame_plus_the_logged_features(store_fed, tmp_path):
    from flows.retrain import retrain

    config, entity = store_fed
    rng = np.random.default_rng(4)
    logged = rng.uniform(0.0, 1000.0, 300).round(2)
    _log_labelled_traffic(config, logged, (logged > 500.0).astype(int).tolist())

    result = retrain(config=config)
    assert result.labelled_rows == 300 and result.model_version == "1", result
    snapshot = read_frame(result.data_uri)
    joined = datasets.read_training_frame(config.dataset, tmp_path / "home").frame
    # The base is the joined frame (never a marker, no customer id); the log's rows follow it.
    assert list(snapshot.columns) == list(joined.columns) and len(snapshot) == len(entity) + 300
    assert snapshot["balance"].head(len(joined)).tolist() == joined["balance"].tolist()
    assert sorted(snapshot["balance"].tail(300)) == sorted(logged) and snapshot["balance"].max() < MARKER
