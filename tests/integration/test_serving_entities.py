"""Serving by entity key: `python -m mlops.serving` over real HTTP, a real Feast repository (SQLite online
store by default, the machine's Redis in one test) and a store-fed model registered in a real MLflow store.

The model (tests/store_fed.py) was trained on exactly its feature service's columns, built with
`historical_frame`; its config sets dataset.feature_service, which is what makes serving look its
features up by `customer_id`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops import features
from mlops.local import stack
from mlops.registry import Registry
from mlops.serving.metrics import (
    REJECTED_REQUESTS_TOTAL,
    REQUEST_ERRORS_TOTAL,
    SERVICE_ERRORS_TOTAL,
)
from mlops.serving.prediction_log import (
    model_log_uri,
    read_labelled_predictions,
    read_prediction_log,
)
from tests.integration.test_feature_store_team import _redis_url
from tests.integration.test_serving import Server, metric, start_server
from tests.store_fed import (
    FEATURES,
    PROFILE_ONLY,
    SERVICE,
    STALE,
    UNKNOWN,
    applied_store,
    make_store_repo,
    redis_store,
    register_store_fed,
    store_fed_config,
    training_frame,
)

MODEL = "store-fed"
FLAT = "flat-churn"
CUSTOMERS = 200


def _register(tmp_path: Path, store: object, now: datetime) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = os.getcwd()
    os.chdir(tmp_path)  # MLflow's Default experiment lands under ./mlruns of the working directory
    try:
        register_store_fed(uri, tmp_path / "mlartifacts", MODEL, training_frame(store, CUSTOMERS, now))
        # The same pipeline under a second name, served without a feature service: not store-fed.
        register_store_fed(uri, tmp_path / "mlartifacts", FLAT, training_frame(store, CUSTOMERS, now))
    finally:
        os.chdir(previous)
    return uri


@contextmanager
def serving(tmp_path: Path, repo: Path, tracking_uri: str) -> Iterator[Server]:
    """Both models in one app (the store-fed one is the default), home = the repository's home."""
    log_uri = str(tmp_path / "predictions")
    catalogue = tmp_path / "configs"
    catalogue.mkdir(exist_ok=True)
    config = store_fed_config(MODEL, repo, log_uri)
    (catalogue / "a-store-fed.yaml").write_text(yaml.safe_dump({**config, "serving": {**config["serving"], "default": True}}))
    flat = {**config, "dataset": {"uri": "unused.parquet", "target": "churned"}, "model": {"name": FLAT}}
    (catalogue / "b-flat.yaml").write_text(yaml.safe_dump(flat))
    with start_server(tracking_uri, tmp_path, ["--catalogue", str(catalogue)], model_log_uri(log_uri, MODEL)) as server:
        yield server


@pytest.fixture
def sqlite_setup(tmp_path: Path) -> tuple[Path, str, object, datetime]:
    now = datetime.now(UTC)
    repo = make_store_repo(tmp_path, CUSTOMERS, now=now)
    # start_server gives the app MLOPS_HOME=tmp_path/home: the registry and online.db live there.
    store = applied_store(repo, tmp_path / "home", now)
    return repo, _register(tmp_path, store, now), store, now


def test_entities_are_looked_up_checked_scored_and_logged_per_record(sqlite_setup, tmp_path):
    repo, tracking_uri, store, now = sqlite_setup
    entities = [{"customer_id": 1}, {"customer_id": UNKNOWN}, {"customer_id": 2}, {"customer_id": STALE},
                {"customer_id": PROFILE_ONLY}, {"customer_id": 3, "plan": "pro"}]
    with serving(tmp_path, repo, tracking_uri) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/predict", json={"entities": entities})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["statuses"] == ["ok", "unknown_entity", "ok", "stale", "missing_feature", "ok"]
        errors = {e["record"]: e for e in body["errors"]}
        assert set(errors) == {1, 3, 4}
        assert errors[1]["status"] == "unknown_entity" and errors[1]["detail"].startswith(
            f"record 1: unknown entity customer_id={UNKNOWN}")
        assert (errors[3]["status"], errors[3]["view"], errors[3]["field"]) == ("stale", "activity", "balance")
        assert "older than the view's TTL of 10 d" in errors[3]["detail"]
        assert (errors[4]["status"], errors[4]["view"]) == ("missing_feature", "activity")
        # Records not scored get null answers; the others are the registered pipeline's own.
        assert [p is None for p in body["predictions"]] == [False, True, False, True, True, False]
        assert body["probabilities"][1] is None and len(body["probabilities"][0]) == 2

        expected = features.historical_frame(
            store, pd.DataFrame({"customer_id": [1, 2, 3], "event_timestamp": pd.Timestamp(now)}), SERVICE)
        expected.loc[2, "plan"] = "pro"  # the request-time field wins over the looked-up value
        pipeline = Registry(tracking_uri).load_model(MODEL, "1")
        answered = [body["predictions"][i] for i in (0, 2, 5)]
        assert answered == pipeline.predict(expected[list(FEATURES)]).tolist()
        assert np.allclose([body["probabilities"][i] for i in (0, 2, 5)], pipeline.predict_proba(expected[list(FEATURES)]))

        # The whole request is refused (422) for what is the caller's fault, as with records.
        refusals = [
            ({"entities": [{"customer_id": "abc"}]}, "record 0: join key 'customer_id' must be an integer, got 'abc'"),
            ({"entities": [{"plan": "pro"}]}, "record 0: missing join key 'customer_id' of feature service 'churn_online'"),
            ({"entities": [{"customer_id": 1, "colour": "red"}]}, "record 0: unknown field 'colour'"),
            ({"entities": [{"customer_id": 1, "age": "old"}]}, "record 0: field 'age' must be a number, got 'old'"),
            ({"entities": []}, "'entities' has no records"),
        ]
        for doc, text in refusals:
            refused = client.post("/predict", json=doc)
            assert refused.status_code == 422 and text in refused.json()["detail"], refused.text
        # Entities for a model whose features come with the request: 422 naming the problem.
        flat = client.post(f"/models/{FLAT}/predict", json={"entities": [{"customer_id": 1}]})
        assert flat.status_code == 422 and "not fed from a feature store" in flat.json()["detail"], flat.text
        assert flat.json()["field"] == "entities"
        # Records with every feature still work for the store-fed model (and by name).
        records = expected[list(FEATURES)].astype(object).to_dict(orient="records")
        by_records = client.post(f"/models/{MODEL}/predict", json={"records": records}).json()
        assert by_records["predictions"] == answered and "statuses" not in by_records

        ready = client.get("/ready").json()
        assert ready["feature_store"] == {"feature_service": SERVICE, "open": True, "last_error": None}
        spec = client.get("/openapi.json").json()
        entity_schema = spec["components"]["schemas"][f"Entity_{MODEL}"]
        assert entity_schema["required"] == ["customer_id"] and entity_schema["properties"]["customer_id"]["type"] == "integer"
        assert f"Entity_{FLAT}" not in spec["components"]["schemas"]

        labels = [{"request_id": body["request_id"], "row": row, "label": 1} for row in (0, 5)]
        assert client.post("/labels", json={"labels": labels}).json() == {"accepted": 2}
        assert metric(client.get("/metrics").text, REJECTED_REQUESTS_TOTAL, model=FLAT, reason="not_store_fed") == 1
        assert server.stop() == 0, server.tail()

    log = read_prediction_log(server.log_uri)
    mine = log[log["request_id"] == body["request_id"]].sort_values("row")
    # Only the scored records are logged, at their positions in the request, with the features used.
    assert mine["row"].tolist() == [0, 2, 5]
    for column in FEATURES:
        logged = mine[column].tolist()
        assert logged == expected[column].astype(float if column != "plan" else object).tolist(), column
    joined = read_labelled_predictions(server.log_uri)
    assert sorted(joined.loc[joined["request_id"] == body["request_id"], "row"]) == [0, 5]


def test_online_and_offline_features_agree_after_materialization(sqlite_setup, tmp_path):
    repo, tracking_uri, store, now = sqlite_setup
    ids = list(range(1, CUSTOMERS + 1))
    schema = features.describe_service(store, SERVICE)
    online = features.online_features(store, schema, [{"customer_id": i} for i in ids], now=now)
    assert {s.status for s in online.statuses} == {"ok"}
    offline = features.historical_frame(store, pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp(now)}),
                                        SERVICE)
    # The same entity at the same time: identical values from the online store and the offline join.
    for column in FEATURES:
        assert online.columns[column] == offline[column].tolist(), column
    # And through the served app: the features it logged for each entity are the offline ones.
    with serving(tmp_path, repo, tracking_uri) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        request_ids = []
        for start in range(0, len(ids), 50):
            body = client.post("/predict", json={"entities": [{"customer_id": i} for i in ids[start:start + 50]]}).json()
            assert set(body["statuses"]) == {"ok"}
            request_ids.append(body["request_id"])
        assert server.stop() == 0, server.tail()
    log = read_prediction_log(server.log_uri)
    log["order"] = log["request_id"].map({rid: i for i, rid in enumerate(request_ids)}) * 50 + log["row"]
    log = log.sort_values("order")
    assert len(log) == len(ids)
    for column in FEATURES:
        wanted = offline[column].astype(float if column != "plan" else object).tolist()
        assert log[column].tolist() == wanted, column


def _address() -> str:
    """host:port of the test Redis, as Feast's connection_string wants it."""
    return urlsplit(_redis_url()).netloc


def test_an_unreachable_online_store_is_a_503_per_request(tmp_path, redis_client):
    address, redis = _address(), redis_client
    project = f"mlops_test_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    repo = make_store_repo(tmp_path, 20, project=project, online_store=redis_store(address), now=now)
    store = applied_store(repo, tmp_path / "home", now)
    try:
        tracking_uri = _register(tmp_path, store, now)
        # The registry stays; the online store moves to a port nobody listens on.
        dead = f"127.0.0.1:{stack.free_port()}"
        text = (repo / "feature_store.yaml").read_text().replace(address, dead)
        (repo / "feature_store.yaml").write_text(text)
        with serving(tmp_path, repo, tracking_uri) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post("/predict", json={"entities": [{"customer_id": 1}]})
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert detail.startswith("online features: feature store unreachable:") and "\n" not in detail
            # The store's outage is a refusal, not an error of the model version (no rollback for it).
            text = client.get("/metrics").text
            assert metric(text, SERVICE_ERRORS_TOTAL, model=MODEL, reason="feature_store_unavailable") == 1
            assert metric(text, REQUEST_ERRORS_TOTAL, model=MODEL, model_version="1", route="champion") == 0
            # Records with every feature do not need the store.
            row = {"age": 40, "plan": "basic", "balance": 90.0, "calls": 2}
            assert client.post("/predict", json={"records": [row]}).status_code == 200
            assert server.stop() == 0, server.tail()
    finally:
        _drop_project(redis, project)


def test_serving_by_entity_from_redis(tmp_path, redis_client):
    address, redis = _address(), redis_client
    project = f"mlops_test_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    repo = make_store_repo(tmp_path, 20, project=project, online_store=redis_store(address), now=now)
    store = applied_store(repo, tmp_path / "home", now)
    try:
        assert _project_keys(redis, project) > 0  # materialization wrote to Redis, not to SQLite
        tracking_uri = _register(tmp_path, store, now)
        with serving(tmp_path, repo, tracking_uri) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            entities = [{"customer_id": 1}, {"customer_id": UNKNOWN}, {"customer_id": STALE}, {"customer_id": 2},
                        {"customer_id": PROFILE_ONLY}]
            body = client.post("/predict", json={"entities": entities}).json()
            assert body["statuses"] == ["ok", "unknown_entity", "stale", "ok", "missing_feature"], body
            offline = features.historical_frame(
                store, pd.DataFrame({"customer_id": [1, 2], "event_timestamp": pd.Timestamp(now)}), SERVICE)
            pipeline = Registry(tracking_uri).load_model(MODEL, "1")
            assert [body["predictions"][0], body["predictions"][3]] == pipeline.predict(offline[list(FEATURES)]).tolist()
            assert server.stop() == 0, server.tail()
        # Redis and the offline store agree too, for every customer.
        ids = list(range(1, 21))
        online = features.online_features(store, features.describe_service(store, SERVICE),
                                          [{"customer_id": i} for i in ids], now=now)
        offline = features.historical_frame(
            store, pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp(now)}), SERVICE)
        for column in FEATURES:
            assert online.columns[column] == offline[column].tolist(), column
        log = read_prediction_log(server.log_uri)
        assert sorted(log["row"]) == [0, 3]
    finally:
        _drop_project(redis, project)
    assert _project_keys(redis, project) == 0


def _project_keys(client, project: str) -> int:
    # Feast's Redis keys are the serialized entity key followed by the project name.
    return sum(1 for _ in client.scan_iter(match=f"*{project}", count=1000))


def _drop_project(client, project: str) -> None:
    for key in list(client.scan_iter(match=f"*{project}", count=1000)):
        client.delete(key)
