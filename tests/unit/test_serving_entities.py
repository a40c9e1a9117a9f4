"""Serving by entity key, in-process: request checks, one online lookup per micro-batch, per-record
statuses, the OpenAPI entity schema. The online store is a fake here (the real one, over HTTP, is
tests/integration/test_serving_entities.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd
import pytest

from mlops.config import ModelConfig
from mlops.contract import infer_contract
from mlops.features import OnlineFeatures, ServiceSchema
from mlops.features.store import FeatureProblem
from mlops.serving import openapi
from mlops.serving.batching import MicroBatcher
from mlops.serving.entities import check_entities, record_errors, score_entities
from mlops.serving.payload import PayloadError, parse_request
from mlops.serving.scoring import LoadedModel
from mlops.training import fit_pipeline

SCHEMA = ServiceSchema(
    "svc", {"customer_id": (int,)}, {"age": "profile", "plan": "profile", "balance": "activity"},
    {"profile": None, "activity": 864000},
)
STORE = {  # customer -> its online features; 7 has no activity, 8 a stale one, 9 a value the contract refuses
    1: {"age": 30, "plan": "basic", "balance": 50.0},
    2: {"age": 60, "plan": "pro", "balance": 150.0},
    7: {"age": 40, "plan": "plus"},
    8: {"age": 41, "plan": "plus", "balance": 80.0},
    9: {"age": "forty", "plan": "plus", "balance": 80.0},
}


@cache
def model() -> LoadedModel:
    """A classifier on the service's features plus `channel`, which only the request can give."""
    frame = pd.DataFrame({
        "age": [20, 30, 40, 50, 60, 70] * 10, "plan": ["basic", "pro", "plus"] * 20,
        "balance": [float(i) for i in range(60)], "channel": ["web", "shop"] * 30, "churned": [0, 1, 0, 1, 1, 0] * 10,
    })
    contract = infer_contract(frame, "churned", None, "classification")
    pipeline = fit_pipeline(frame, contract, ModelConfig(name="m", params={"max_iter": 5}))
    return LoadedModel("m", "1", pipeline, contract)


class FakeSource:
    schema = SCHEMA

    def __init__(self) -> None:
        self.lookups: list[list[dict[str, Any]]] = []

    def lookup(self, rows: list[dict[str, Any]]) -> OnlineFeatures:
        self.lookups.append(rows)
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.views}
        problems = []
        for row in rows:
            found = STORE.get(row["customer_id"], {})
            mine = []
            for name, view in SCHEMA.views.items():
                columns[name].append(found.get(name))
                if name not in found:
                    mine.append(FeatureProblem("not_found", name, view))
                elif row["customer_id"] == 8 and view == "activity":
                    mine.append(FeatureProblem("stale", name, view, None, 864000))
            problems.append(tuple(mine))
        return OnlineFeatures(SCHEMA, rows, columns, problems)


def test_the_body_says_whether_it_holds_records_or_entities():
    assert parse_request(b'{"entities": [{"customer_id": 1}]}', 10) == ("entities", [{"customer_id": 1}])
    assert parse_request(b'{"records": [{"a": 1}]}', 10)[0] == "records"
    with pytest.raises(PayloadError, match="expected exactly one of 'records', 'dataframe_records', 'dataframe_split', 'entities'"):
        parse_request(b'{"records": [{"a": 1}], "entities": [{"customer_id": 1}]}', 10)


@pytest.mark.parametrize(("record", "message"), [
    ({"channel": "web"}, "record 0: missing join key 'customer_id' of feature service 'svc'"),
    ({"customer_id": True, "channel": "web"}, "record 0: join key 'customer_id' must be an integer, got true"),
    ({"customer_id": 1.5, "channel": "web"}, "record 0: join key 'customer_id' must be an integer, got 1.5"),
    ({"customer_id": 1}, "record 0: missing field 'channel' (a feature of this model that feature service 'svc' does not serve)"),
    ({"customer_id": 1, "channel": "web", "x": 1}, "record 0: unknown field 'x' (neither a join key"),
    ({"customer_id": 1, "channel": 3}, "record 0: field 'channel' must be a string, got 3"),
])
def test_what_the_caller_got_wrong_is_a_422_naming_record_and_field(record, message):
    with pytest.raises(PayloadError) as caught:
        check_entities([record], SCHEMA, model())
    assert caught.value.status == 422 and caught.value.detail.startswith(message)


def test_each_record_is_answered_with_its_status_and_the_rest_are_scored():
    source = FakeSource()
    records = check_entities(
        [{"customer_id": c, "channel": "web"} for c in (1, 404, 7, 8, 9, 2)] + [{"customer_id": 7, "channel": "web", "balance": 10}],
        SCHEMA, model())
    scores = score_entities(model(), source, records)
    assert len(source.lookups) == 1 and [r["customer_id"] for r in source.lookups[0]] == [1, 404, 7, 8, 9, 2, 7]
    assert [s.status for s in scores.statuses] == [
        "ok", "unknown_entity", "missing_feature", "stale", "invalid_feature", "ok", "ok"]
    assert [p is None for p in scores.predictions] == [False, True, True, True, True, False, False]
    # The features used: looked up, with the request's fields merged over them; none for the others.
    assert scores.features[0] == {"age": 30.0, "plan": "basic", "balance": 50.0, "channel": "web"}
    assert scores.features[6] == {"age": 40.0, "plan": "plus", "balance": 10.0, "channel": "web"}
    expected = model().score([scores.features[i] for i in (0, 5, 6)])
    assert [scores.predictions[i] for i in (0, 5, 6)] == expected.predictions
    errors = record_errors(scores.statuses)
    assert [(e["record"], e["status"]) for e in errors] == [
        (1, "unknown_entity"), (2, "missing_feature"), (3, "stale"), (4, "invalid_feature")]
    assert errors[3] == {"record": 4, "status": "invalid_feature", "field": "age", "view": "profile", "detail":
                         "record 4: the online store's value does not fit the model's contract: "
                         "field 'age' must be a number, got 'forty'"}
    assert scores.slice(5, 7).statuses == scores.statuses[5:7]


def test_a_micro_batch_of_many_requests_makes_one_online_lookup():
    source = FakeSource()
    batcher = MicroBatcher(lambda records: score_entities(model(), source, records), max_rows=64, max_wait=0.05)

    async def main() -> list[Any]:
        requests = [check_entities([{"customer_id": c, "channel": "web"}], SCHEMA, model()) for c in (1, 2, 404, 8)]
        return await asyncio.gather(*(batcher.submit(r) for r in requests))

    answers = asyncio.run(main())
    assert len(source.lookups) == 1 and batcher.calls == 1
    assert [a.statuses[0].status for a in answers] == ["ok", "ok", "unknown_entity", "stale"]


def test_the_openapi_document_offers_entities_for_a_store_fed_model():
    contract = model().contract
    doc = openapi.add_models({}, [("m", contract, 10, "1"), ("flat", contract, 10, "1")], "m", False, {"m": SCHEMA})
    schemas = doc["components"]["schemas"]
    entity = schemas["Entity_m"]
    # The join key and the feature the service does not serve are required; served ones may override.
    assert entity["required"] == ["customer_id", "channel"] and entity["properties"]["customer_id"]["type"] == "integer"
    assert set(entity["properties"]) == {"customer_id", "age", "plan", "balance", "channel"}
    assert {"$ref": "#/components/schemas/Entity_m"} in [
        option["properties"].get("entities", {}).get("items") for option in schemas["PredictRequest_m"]["oneOf"]]
    assert "statuses" in schemas["PredictResponse_m"]["properties"]
    assert "Entity_flat" not in schemas and len(schemas["PredictRequest_flat"]["oneOf"]) == 3


# -- the app in-process, with a real Feast repository ---------------------------------------------


@dataclass
class _Ref:
    version: str


class _Registry:
    """champion v1 and challenger v2 of one store-fed model, fitted on the service's features."""

    def __init__(self, models: dict[str, tuple[Any, Any]]) -> None:
        self.models = models

    def version_by_alias(self, name: str, alias: str) -> _Ref | None:
        return _Ref({"champion": "1", "challenger": "2"}[alias])

    def rollout_split(self, name: str) -> None:
        return None

    def get_version(self, name: str, version: str) -> _Ref:
        return _Ref(version)

    def load_model(self, name: str, version: str) -> Any:
        return self.models[version][0]

    def load_contract(self, ref: _Ref) -> Any:
        return self.models[ref.version][1]


def test_shadow_mode_scores_the_looked_up_features_with_the_canary_and_logs_both(tmp_path):
    from datetime import UTC, datetime

    from starlette.testclient import TestClient

    from mlops.config import Settings, parse_config
    from mlops.serving.app import create_app
    from mlops.serving.prediction_log import model_log_uri, read_prediction_log
    from tests import store_fed
    from tests.unit.test_serving_app import wait_for

    now = datetime.now(UTC)
    repo = store_fed.make_store_repo(tmp_path, 60, now=now)
    store = store_fed.applied_store(repo, tmp_path / "home", now)
    data = store_fed.training_frame(store, 60, now)[[*store_fed.FEATURES, "churned"]]
    contract = infer_contract(data, "churned", None, "classification")
    models = {v: (fit_pipeline(data, contract, ModelConfig(name="sf", params={"max_iter": 5 * int(v)})), contract)
              for v in ("1", "2")}
    log_uri = str(tmp_path / "log")
    config = parse_config(store_fed.store_fed_config("sf", repo, log_uri, mode="shadow", refresh_seconds=0.05))
    app = create_app(config, "unused://", registry_factory=lambda: _Registry(models),
                     settings=Settings(MLOPS_HOME=str(tmp_path / "home")))
    entities = [{"customer_id": store_fed.UNKNOWN}, {"customer_id": 1}, {"customer_id": 2, "calls": 7}]
    with TestClient(app, base_url="http://127.0.0.1") as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        body = client.post("/predict", json={"entities": entities}).json()
        assert body["statuses"] == ["unknown_entity", "ok", "ok"] and body["route"] == "champion"
        wait_for(lambda: "shadow" in client.get("/metrics").text)  # the canary's scoring is in the background
    log = read_prediction_log(model_log_uri(log_uri, "sf"))
    for route, version in (("champion", "1"), ("shadow", "2")):
        part = log[log["route"] == route].sort_values("row")
        assert part["row"].tolist() == [1, 2] and set(part["model_version"]) == {version}
        assert part["calls"].tolist()[1] == 7.0  # the request-time field, in both
    shadow = log[log["route"] == "shadow"].sort_values("row")
    assert shadow["prediction"].tolist() == models["2"][0].predict(
        shadow[list(store_fed.FEATURES)].astype({"plan": object})).tolist()
