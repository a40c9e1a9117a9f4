"""One serving app, many models (in-process, fake registry): routing by name, 404, per-model swap,
log partitions and metrics, LRU loading, the Open Inference Protocol routes and the OpenAPI document.

Two models of different tasks: `churn` (a classifier, the default model) and `spend` (a regressor
of monthly charges on the same customers); both over real HTTP are in tests/integration/test_serving.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.catalogue import load_catalogue
from mlops.config import ModelConfig, Settings, parse_config
from mlops.contract import DataContract, infer_contract
from mlops.errors import ConfigError
from mlops.local.simulate import simulate_churn
from mlops.serving.app import create_app
from mlops.serving.host import choose_default
from mlops.serving.metrics import REJECTED_REQUESTS_TOTAL, REQUESTS_TOTAL
from mlops.serving.prediction_log import (
    model_log_uri,
    read_labelled_predictions,
    read_prediction_log,
)
from mlops.training import fit_pipeline
from tests.unit.test_serving_app import wait_for
from tests.unit.test_serving_models import fitted

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROW = {
    "age": 40, "tenure_months": 12, "monthly_charges": 70.5, "total_charges": None,
    "support_calls": 1, "num_products": 2, "contract": "one-year", "plan": "basic",
    "payment_method": "card", "region": "north",
}
SPEND_ROW = {k: v for k, v in ROW.items() if k != "monthly_charges"}


@cache
def regressor(seed: int = 1) -> tuple[Any, DataContract]:
    """A tiny regressor of monthly charges (the churn label left out)."""
    frame = simulate_churn(400, seed=seed).drop(columns=["churned"])
    contract = infer_contract(frame, "monthly_charges", "event_time", "regression")
    model = ModelConfig(name="spend", task="regression", estimator="sklearn.linear_model.Ridge", params={"alpha": float(seed)})
    return fit_pipeline(frame, contract, model), contract


@dataclass
class Ref:
    name: str
    version: str


@dataclass
class Registry:
    """Aliases per model name; `loads` records every (model, version) loaded."""

    aliases: dict[str, dict[str, str]] = field(default_factory=lambda: {"churn": {"champion": "1"}, "spend": {"champion": "1"}})
    loads: list[tuple[str, str]] = field(default_factory=list)

    def version_by_alias(self, name: str, alias: str) -> Ref | None:
        version = self.aliases.get(name, {}).get(alias)
        return Ref(name, version) if version is not None else None

    def rollout_split(self, name: str) -> None:
        return None

    def get_version(self, name: str, version: str) -> Ref:
        return Ref(name, version)

    def load_model(self, name: str, version: str) -> Any:
        self.loads.append((name, version))
        return (fitted(int(version)) if name == "churn" else regressor(int(version)))[0]

    def load_contract(self, ref: Ref) -> DataContract:
        return (fitted(int(ref.version)) if ref.name == "churn" else regressor(int(ref.version)))[1]


def configs(tmp_path, **serving: Any) -> list:
    common = {"prediction_log_uri": str(tmp_path / "log"), "refresh_seconds": 0.05}
    return [
        parse_config({"dataset": {"uri": "x.parquet", "target": "churned"}, "model": {"name": "churn"},
                      "serving": {**common, "default": True, **serving}}),
        parse_config({"dataset": {"uri": "y.parquet", "target": "monthly_charges"},
                      "model": {"name": "spend", "task": "regression", "estimator": "sklearn.linear_model.Ridge"},
                      "serving": common}),
    ]


@contextmanager
def serve(tmp_path, registry: Registry, env: dict[str, str] | None = None, **serving: Any) -> Iterator[TestClient]:
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"), **(env or {}))
    app = create_app(configs(tmp_path, **serving), "unused://", registry_factory=lambda: registry, settings=settings)
    headers = {"X-API-Key": env["MLOPS_API_KEY"]} if env and "MLOPS_API_KEY" in env else {}
    with TestClient(app, base_url="http://127.0.0.1", headers=headers) as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        yield client


def metric(client: TestClient, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and line.split("{", 1)[1].split("}", 1)[0] == want:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def v2_inputs(rows: list[dict[str, Any]], contract: DataContract) -> list[dict[str, Any]]:
    kinds = {"numeric": "FP64", "boolean": "BOOL"}
    return [
        {"name": c.name, "shape": [len(rows)], "datatype": kinds.get(c.kind, "BYTES"), "data": [r[c.name] for r in rows]}
        for c in contract.feature_columns
    ]


# -- routing ---------------------------------------------------------------------------------------


def test_each_model_answers_on_its_own_route_and_predict_is_the_default(tmp_path):
    with serve(tmp_path, Registry()) as client:
        churn = client.post("/models/churn/predict", json={"records": [ROW]}).json()
        spend = client.post("/models/spend/predict", json={"records": [SPEND_ROW, {**SPEND_ROW, "age": 70}]})
        default = client.post("/predict", json={"records": [ROW]}).json()
        assert spend.status_code == 200, spend.text
        body = spend.json()
        assert set(body) == {"predictions", "model_version", "model_alias", "route", "request_id"}  # no classes
        expected = regressor(1)[0].predict(pd.DataFrame([SPEND_ROW, {**SPEND_ROW, "age": 70}]).astype({"total_charges": float}))
        assert np.allclose(body["predictions"], expected)
        assert churn["classes"] == [0, 1] and default["classes"] == [0, 1]
        assert default["predictions"] == churn["predictions"]
        # A churn record is not a spend record: each model checks its own contract.
        wrong = client.post("/models/spend/predict", json={"records": [ROW]})
        assert wrong.status_code == 422 and "unknown field 'monthly_charges'" in wrong.json()["detail"]
        assert metric(client, REQUESTS_TOTAL, model="churn", model_version="1", route="champion") == 2
        assert metric(client, REQUESTS_TOTAL, model="spend", model_version="1", route="champion") == 1
        assert metric(client, REJECTED_REQUESTS_TOTAL, model="spend", reason="unknown_field") == 1
        ready = client.get("/ready").json()
        assert ready["default_model"] == "churn" and ready["models"]["champion"]["version"] == "1"
        assert set(ready["catalogue"]) == {"churn", "spend"} and ready["catalogue"]["spend"]["loaded"] is True


def test_an_unknown_model_is_404_naming_it(tmp_path):
    with serve(tmp_path, Registry()) as client:
        for path in ("/models/nope/predict", "/models/nope/labels"):
            response = client.post(path, json={"records": [ROW]})
            assert response.status_code == 404 and response.json() == {"detail": "unknown model 'nope'"}
        v2 = client.post("/v2/models/nope/infer", json={"inputs": []})
        assert v2.status_code == 404 and v2.json() == {"error": "unknown model 'nope'"}
        assert client.get("/v2/models/nope").status_code == 404
        assert metric(client, REJECTED_REQUESTS_TOTAL, model="-", reason="unknown_model") == 4


def test_each_model_swaps_its_champion_on_its_own(tmp_path):
    registry = Registry()
    with serve(tmp_path, registry) as client:
        assert client.post("/models/spend/predict", json={"records": [SPEND_ROW]}).json()["model_version"] == "1"
        registry.aliases["spend"]["champion"] = "2"
        wait_for(lambda: client.post("/models/spend/predict", json={"records": [SPEND_ROW]}).json()["model_version"] == "2")
        assert client.post("/predict", json={"records": [ROW]}).json()["model_version"] == "1"
        assert ("churn", "2") not in registry.loads


def test_each_models_rows_and_labels_land_in_its_own_partition(tmp_path):
    with serve(tmp_path, Registry()) as client:
        churn = [client.post("/models/churn/predict", json={"records": [ROW] * 2}).json()["request_id"] for _ in range(3)]
        spend = [client.post("/models/spend/predict", json={"records": [SPEND_ROW]}).json()["request_id"] for _ in range(4)]
        assert client.post("/models/spend/labels", json={"labels": [{"request_id": spend[0], "row": 0, "label": 55.5}]}).status_code == 200
        # A class label is not a spend label: labels are checked against their model's contract.
        assert client.post("/models/spend/labels", json={"labels": [{"request_id": spend[0], "row": 0, "label": "yes"}]}).status_code == 422
        assert client.post("/labels", json={"labels": [{"request_id": churn[0], "row": 1, "label": 1}]}).status_code == 200
    base = str(tmp_path / "log")
    churn_log, spend_log = read_prediction_log(model_log_uri(base, "churn")), read_prediction_log(model_log_uri(base, "spend"))
    assert set(churn_log["request_id"]) == set(churn) and set(churn_log["model_name"]) == {"churn"} and len(churn_log) == 6
    assert set(spend_log["request_id"]) == set(spend) and set(spend_log["model_name"]) == {"spend"} and len(spend_log) == 4
    assert read_labelled_predictions(model_log_uri(base, "spend"))["label"].tolist() == [55.5]
    assert read_labelled_predictions(model_log_uri(base, "churn"))["request_id"].tolist() == [churn[0]]
    # The write-ahead segments are per partition too.
    assert len(list((tmp_path / "home" / "serving-wal").iterdir())) == 2


def test_the_partition_of_a_model_cannot_be_another_models():
    assert model_log_uri("/log", "a") != model_log_uri("/log", "b")
    assert model_log_uri("/log", "../b").startswith("/log/model=") and "/" not in model_log_uri("/log", "../b")[len("/log/"):]
    assert model_log_uri("s3://bucket/log", "a/b") == "s3://bucket/log/model=a%2Fb"


# -- memory ----------------------------------------------------------------------------------------


def test_models_load_on_demand_and_the_least_recently_used_is_evicted(tmp_path):
    registry = Registry()
    with serve(tmp_path, registry, max_loaded_models=1) as client:
        assert client.get("/ready").json()["loaded_models"] == ["churn"] and ("spend", "1") not in registry.loads
        assert client.post("/models/spend/predict", json={"records": [SPEND_ROW]}).status_code == 200
        ready = client.get("/ready").json()
        assert ready["loaded_models"] == ["spend"] and ready["catalogue"]["churn"]["loaded"] is False
        # The evicted default model reloads on its next request: slower, never an error.
        response = client.post("/predict", json={"records": [ROW]})
        assert response.status_code == 200 and response.json()["model_version"] == "1"
        assert client.get("/ready").json()["loaded_models"] == ["churn"]
        assert registry.loads.count(("churn", "1")) == 2
    with serve(tmp_path, Registry()) as client:  # the default limit keeps both
        client.post("/models/spend/predict", json={"records": [SPEND_ROW]})
        assert sorted(client.get("/ready").json()["loaded_models"]) == ["churn", "spend"]


def test_the_default_model_is_chosen_by_setting_or_catalogue_order(tmp_path):
    with serve(tmp_path, Registry(), env={"MLOPS_DEFAULT_MODEL": "spend"}) as client:
        ready = client.get("/ready").json()
        assert (ready["default_model"], ready["default_model_source"]) == ("spend", "MLOPS_DEFAULT_MODEL")
        assert "classes" not in client.post("/predict", json={"records": [SPEND_ROW]}).json()
    with serve(tmp_path / "declared", Registry()) as client:
        assert client.get("/ready").json()["default_model_source"] == "serving.default"


def _catalogue(directory, files: dict[str, str]) -> Any:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return load_catalogue(directory)


CHURN_FILE = "dataset: {uri: x.parquet, target: churned}\nmodel: {name: churn}\n"
SPEND_FILE = "dataset: {uri: y.parquet, target: monthly_charges}\nmodel: {name: spend, task: regression}\n"


def test_a_model_that_sorts_first_never_becomes_the_default_unsaid(tmp_path):
    # Found by hostile testing: a new, never-trained model in `-dash.yaml` sorted first, became the
    # default, and /predict, /ready and /v2/health/ready answered 503 while churn was healthy.
    new_model = "dataset: {uri: z.parquet, target: churned}\nmodel: {name: new-model}\n"
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"))
    declared = _catalogue(tmp_path / "declared", {
        "-dash.yaml": new_model, "churn.yaml": CHURN_FILE.replace("}\n", "}\nserving: {default: true}\n", 1),
        "spend.yaml": SPEND_FILE})
    app = create_app(declared, "unused://", registry_factory=Registry, settings=settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.get("/ready").json()["default_model"] == "churn"
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.post("/predict", json={"records": [ROW]}).json()["classes"] == [0, 1]
    # Several models and none declared: the unnamed routes name the choice; the named ones answer.
    undeclared = _catalogue(tmp_path / "undeclared", {"-dash.yaml": new_model, "churn.yaml": CHURN_FILE,
                                                      "spend.yaml": SPEND_FILE})
    app = create_app(undeclared, "unused://", registry_factory=Registry,
                     settings=Settings(MLOPS_HOME=str(tmp_path / "home2")))
    assert app.state.host.default is None
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for path, body in (("/predict", {"records": [ROW]}), ("/labels", {"labels": [{"request_id": "r", "row": 0, "label": 1}]})):
            response = client.post(path, json=body)
            assert response.status_code == 409, response.text
            detail = response.json()["detail"]
            assert detail.startswith("no default model: 3 models are served (new-model, churn, spend)"), detail
            assert "serving.default: true" in detail and "MLOPS_DEFAULT_MODEL" in detail and "\n" not in detail
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["default_model"] is None
        assert ready.json()["default_model_error"] == detail
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/models/churn/predict", json={"records": [ROW]}).status_code == 200
        assert metric(client, REJECTED_REQUESTS_TOTAL, model="-", reason="no_default_model") == 2
    # Two files that both claim it: neither wins by its name.
    both = [c.model_copy(update={"serving": c.serving.model_copy(update={"default": True})}) for c in configs(tmp_path)]
    assert choose_default(both, None) == (None, "no default model: churn, spend each set serving.default: true; keep "
                                          "it in one config, or set MLOPS_DEFAULT_MODEL (mlops serve --default-model); "
                                          "named routes /models/<name>/predict answer meanwhile")


def test_one_model_is_the_default_and_a_configured_default_must_be_served(tmp_path):
    assert choose_default(configs(tmp_path)[1:], None) == ("spend", "the only model")
    with pytest.raises(ConfigError, match=r"^default model 'nope' is not among the served models \(churn, spend\)$"):
        choose_default(configs(tmp_path), "nope")


# -- the Open Inference Protocol -------------------------------------------------------------------


def test_v2_health_metadata_and_ready(tmp_path):
    with serve(tmp_path, Registry()) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        assert client.get("/v2/models/spend/ready").json() == {"name": "spend", "ready": True}
        meta = client.get("/v2/models/churn").json()
        contract = fitted(1)[1]
        assert meta["name"] == "churn" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
        assert [i["name"] for i in meta["inputs"]] == contract.feature_names
        kinds = {i["name"]: i["datatype"] for i in meta["inputs"]}
        assert kinds["age"] == "FP64" and kinds["contract"] == "BYTES"
        assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
            ("predictions", [-1]), ("probabilities", [-1, 2]), ("classes", [2])]
        assert [o["name"] for o in client.get("/v2/models/spend").json()["outputs"]] == ["predictions"]


def test_v2_infer_answers_like_predict_and_is_logged(tmp_path):
    rows = [ROW, {**ROW, "support_calls": 6}]
    with serve(tmp_path, Registry()) as client:
        expected = client.post("/predict", json={"records": rows}).json()
        response = client.post("/v2/models/churn/infer", json={"id": "req-7", "inputs": v2_inputs(rows, fitted(1)[1])})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model_name"], body["model_version"], body["id"]) == ("churn", "1", "req-7")
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predictions"]["data"] == expected["predictions"] and outputs["predictions"]["shape"] == [2]
        assert outputs["predictions"]["datatype"] == "INT64"
        assert outputs["probabilities"]["shape"] == [2, 2]
        assert np.allclose(outputs["probabilities"]["data"], np.ravel(expected["probabilities"]))
        assert outputs["classes"]["data"] == [0, 1]
        logged_id = body["parameters"]["request_id"]
        assert response.headers["X-Request-ID"] == logged_id
        spend = client.post("/v2/models/spend/infer", json={
            "inputs": v2_inputs([SPEND_ROW], regressor(1)[1]), "outputs": [{"name": "predictions"}]}).json()
        assert [o["name"] for o in spend["outputs"]] == ["predictions"] and spend["outputs"][0]["datatype"] == "FP64"
        assert spend["id"] == spend["parameters"]["request_id"]
        assert metric(client, REQUESTS_TOTAL, model="churn", model_version="1", route="champion") == 2
    log = read_prediction_log(model_log_uri(str(tmp_path / "log"), "churn"))
    assert log.groupby("request_id").size().to_dict() == {expected["request_id"]: 2, logged_id: 2}


def test_v2_errors_are_400_with_one_line_naming_the_problem(tmp_path):
    contract = fitted(1)[1]
    good = v2_inputs([ROW], contract)

    def without(name: str) -> list[dict[str, Any]]:
        return [t for t in good if t["name"] != name]

    def changed(name: str, **fields: Any) -> list[dict[str, Any]]:
        return [({**t, **fields} if t["name"] == name else t) for t in good]

    cases = [
        ({"inputs": without("age")}, "missing input 'age'"),
        ({"inputs": [*good, {"name": "colour", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}, "unknown input 'colour'"),
        ({"inputs": changed("age", datatype="BYTES", data=["40"])}, "datatype BYTES does not fit a numeric feature"),
        ({"inputs": changed("age", shape=[2])}, "shape says 2 value(s), 'data' has 1"),
        ({"inputs": changed("age", shape=[1, 3], data=[1, 2, 3])}, "is not [N] or [N, 1]"),
        ({"inputs": changed("age", datatype="FP128")}, "not a V2 datatype"),
        ({"inputs": changed("age", data=["abc"], datatype="FP64")}, "field 'age' must be a number"),
        ({"inputs": good, "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
        ({"inputs": []}, "'inputs' must be a non-empty array"),
        ({"records": [ROW]}, "unknown top-level key 'records'"),
    ]
    with serve(tmp_path, Registry()) as client:
        for doc, text in cases:
            response = client.post("/v2/models/churn/infer", json=doc)
            assert response.status_code == 400, (doc, response.text)
            assert set(response.json()) == {"error"} and text in response.json()["error"], response.text
        assert client.post("/v2/models/churn/infer", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
        nested = changed("age", shape=[1, 1], data=[[40]])
        assert client.post("/v2/models/churn/infer", json={"inputs": nested}).status_code == 200
    assert len(read_prediction_log(model_log_uri(str(tmp_path / "log"), "churn"))) == 1


# Any JSON value: what a client can put in any field of a V2 request.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _v2_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid V2 infer request with one to three fields (a tensor's or the request's) set to any JSON value."""
    doc: dict[str, Any] = {"inputs": v2_inputs([ROW], fitted(1)[1])}
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            tensor = draw(st.sampled_from(doc["inputs"])) if isinstance(doc["inputs"], list) and doc["inputs"] else None
            if isinstance(tensor, dict):
                tensor[draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))] = draw(_json_values)
                continue
        doc[draw(st.sampled_from(["id", "inputs", "outputs", "parameters"]))] = draw(_json_values)
    return doc


def test_v2_fields_of_any_json_type_are_400_naming_the_input_never_5xx(tmp_path):
    contract = fitted(1)[1]
    good = v2_inputs([ROW], contract)

    def changed(**fields: Any) -> list[dict[str, Any]]:
        return [({**t, **fields} if t["name"] == "age" else t) for t in good]

    with serve(tmp_path, Registry()) as client:
        # Found by hostile testing: an unhashable datatype was a 500 (TypeError: unhashable type).
        for datatype in (["FP64"], {"type": "FP64"}, 64, True, None):
            response = client.post("/v2/models/churn/infer", json={"inputs": changed(datatype=datatype)})
            assert response.status_code == 400, (datatype, response.text)
            assert "input 'age'" in response.json()["error"] and "datatype" in response.json()["error"]
        for shape in ([[1]], [{"n": 1}], "1", [1.0]):
            response = client.post("/v2/models/churn/infer", json={"inputs": changed(shape=shape)})
            assert response.status_code == 400 and "input 'age'" in response.json()["error"], (shape, response.text)

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(doc=_v2_requests())
        def check(doc: dict[str, Any]) -> None:
            response = client.post("/v2/models/churn/infer", json=doc)
            assert response.status_code in (200, 400), (doc, response.text)
            if response.status_code == 400:
                assert set(response.json()) == {"error"} and "\n" not in response.json()["error"]

        check()


def test_v2_model_routes_need_the_key_health_does_not(tmp_path):
    with serve(tmp_path, Registry(), env={"MLOPS_API_KEY": "k"}) as client:
        client.headers.pop("X-API-Key")
        assert client.get("/v2/health/ready").status_code == 200
        denied = client.post("/v2/models/churn/infer", json={"inputs": []})
        assert denied.status_code == 401 and "X-API-Key" in denied.json()["error"]
        assert client.post("/models/spend/predict", json={"records": [SPEND_ROW]}).status_code == 401
        assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200
        # The page's script and style come from the app (no CDN), and need no key either.
        page = client.get("/docs").text
        assert "https://" not in page and "http://" not in page
        script = client.get("/docs/assets/swagger-ui-bundle.js")
        assert script.status_code == 200 and "SwaggerUIBundle" in script.text[:2000]
        assert client.get("/docs/assets/swagger-ui.css").status_code == 200


# -- OpenAPI ---------------------------------------------------------------------------------------


def test_openapi_request_schemas_come_from_each_loaded_contract(tmp_path):
    with serve(tmp_path, Registry(), env={"MLOPS_API_KEY": "k"}) as client:
        doc = client.get("/openapi.json").json()
        schemas = doc["components"]["schemas"]
        churn = schemas["Record_churn"]
        contract = fitted(1)[1]
        assert churn["required"] == contract.feature_names and churn["additionalProperties"] is False
        assert set(churn["properties"]["contract"]["x-training-categories"]) == set(contract.column("contract").categories)
        age = contract.column("age")
        assert churn["properties"]["age"]["x-training-range"] == [age.min, age.max]
        assert "number" in churn["properties"]["age"]["type"]
        assert doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/PredictRequest_churn"}
        # spend is not loaded yet: a generic record, described once its champion is in.
        assert "properties" not in schemas["Record_spend"]
        assert doc["components"]["securitySchemes"]["APIKey"]["name"] == "X-API-Key"
        assert "/v2/models/{name}/infer" in doc["paths"] and "/health" in doc["paths"]
        client.post("/models/spend/predict", json={"records": [SPEND_ROW]})
        spend = client.get("/openapi.json").json()["components"]["schemas"]["Record_spend"]
        assert spend["required"] == regressor(1)[1].feature_names and "monthly_charges" not in spend["properties"]
        assert client.get("/docs").status_code == 200


def test_the_openapi_document_is_cached_until_a_model_swaps(tmp_path):
    registry = Registry()
    with serve(tmp_path, registry) as client:
        app = client.app
        first = app.openapi()
        assert app.openapi() is first
        registry.aliases["churn"]["champion"] = "2"
        wait_for(lambda: client.post("/predict", json={"records": [ROW]}).json()["model_version"] == "2")
        assert app.openapi() is not first and "champion v2" in app.openapi()["paths"]["/predict"]["post"]["description"]


@pytest.mark.parametrize("path", ["/predict", "/models/{name}/predict"])
def test_predict_routes_stay_plain_asgi(tmp_path, path):
    # FastAPI's request validation would cost as much as a prediction; the routes are ASGI apps.
    from starlette.routing import Route

    from mlops.serving.app import ModelPredictEndpoint, PredictEndpoint

    app = create_app(configs(tmp_path), "unused://", registry_factory=Registry, settings=Settings(MLOPS_HOME=str(tmp_path / "h")))
    route = next(r for r in app.router.routes if getattr(r, "path", None) == path)
    assert type(route) is Route and isinstance(route.app, PredictEndpoint | ModelPredictEndpoint)
