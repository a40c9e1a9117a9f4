"""The serving app as users run it: `python -m mlops.serving` as a real process, over real HTTP,
loading real registered versions from an MLflow SQLite store.

Two versions are registered once per module (v1 `champion`, v2 `challenger`); each test copies
the store, so moving an alias in one test cannot leak into another.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from mlops.contract import infer_contract
from mlops.local import stack
from mlops.local.simulate import simulate_churn
from mlops.registry import ALIAS_CHALLENGER, ALIAS_CHAMPION, Registry
from mlops.serving.metrics import (
    MODEL_INFO,
    REJECTED_REQUESTS_TOTAL,
    REQUEST_ERRORS_TOTAL,
    REQUEST_LATENCY_SECONDS,
    REQUESTS_TOTAL,
)
from mlops.serving.prediction_log import (
    model_log_uri,
    read_labelled_predictions,
    read_prediction_log,
)
from mlops.training import feature_frame, fit_pipeline, skops_trusted_types

MODEL = "serving-churn"
HOST = "127.0.0.1"


# -- fixtures ---------------------------------------------------------------------------------


def register(registry: Registry, frame: pd.DataFrame, contract: Any, model: Any, alias: str) -> None:
    """Fit `model` on `frame` and register it as a new version of `model.name` under `alias`."""
    pipeline = fit_pipeline(frame, contract, model)
    run_id = registry.start_run(model.name, f"serving-test-{alias}", {})
    registry.register_model(
        run_id, model.name, pipeline, contract, feature_frame(frame.head(5), contract),
        skops_trusted_types(pipeline), tags={}, alias=alias,
    )
    registry.end_run(run_id, True)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with v1 (champion) and v2 (challenger), trained on different data."""
    from mlops.config import ModelConfig

    home = tmp_path_factory.mktemp("serving-store")
    previous = os.getcwd()
    # MLflow puts the Default experiment (and with it logged-model artifacts) under ./mlruns of
    # the directory the store is created in: keep that inside the temporary folder.
    os.chdir(home)
    try:
        registry = Registry(f"sqlite:///{home / 'mlflow.db'}", artifact_root=home / "mlartifacts")
        for seed, alias in ((1, ALIAS_CHAMPION), (2, ALIAS_CHALLENGER)):
            frame = simulate_churn(1500, seed=seed)
            contract = infer_contract(frame, "churned", "event_time", "classification")
            register(registry, frame, contract, ModelConfig(name=MODEL, params={"max_iter": 20 * seed}), alias)
    finally:
        os.chdir(previous)
    return home / "mlflow.db"


@pytest.fixture
def store(registered: Path, tmp_path: Path) -> str:
    """A private copy of the registered store (artifact paths inside it are absolute)."""
    shutil.copy(registered, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    output: Path
    log_uri: str

    def stop(self) -> int:
        """SIGTERM, as an orchestrator would: the app drains, flushes its log and exits."""
        stack.stop_pid(self.proc.pid)
        return self.proc.wait(timeout=30)

    def tail(self) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-30:])


@contextmanager
def serve(store: str, tmp_path: Path, env: dict[str, str] | None = None, **serving: Any) -> Iterator[Server]:
    """`python -m mlops.serving --config` on a free loopback port, stopped (process group) whatever happens."""
    log_uri = str(tmp_path / "predictions")
    config = {
        "dataset": {"uri": "unused.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {"name": MODEL},
        "serving": {"prediction_log_uri": log_uri, "refresh_seconds": 0.5, **serving},
    }
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(config))
    with start_server(store, tmp_path, ["--config", str(path)], model_log_uri(log_uri, MODEL), env) as server:
        yield server


@contextmanager
def start_server(
    store: str, tmp_path: Path, what: list[str], log_uri: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`python -m mlops.serving <what>` on a free loopback port, once /ready answers 200."""
    port = stack.free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "MLOPS_"))}
    child_env.update(MLFLOW_TRACKING_URI=store, MLOPS_HOME=str(tmp_path / "home"), **(env or {}))
    output = tmp_path / "server.out"
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops.serving", *what, "--host", HOST, "--port", str(port)],
            cwd=tmp_path, env=child_env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(f"http://{HOST}:{port}", proc, output, log_uri)
    try:
        headers = {"X-API-Key": child_env["MLOPS_API_KEY"]} if "MLOPS_API_KEY" in child_env else {}
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{server.tail()}"
            assert time.monotonic() < deadline, f"server not ready:\n{server.tail()}"
            try:
                if httpx.get(f"{server.url}/ready", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield server
    finally:
        stack.stop_pid(proc.pid)


def rows(n: int, seed: int = 5) -> list[dict[str, Any]]:
    frame = simulate_churn(n, seed=seed).drop(columns=["churned", "event_time"])
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")


def metric(text: str, name: str, model: str = MODEL, **labels: str) -> float:
    """One series of `model` (every series carries a model label), 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "model": model}.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and line.split("{", 1)[1].split("}", 1)[0] == want:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- tests ------------------------------------------------------------------------------------


def test_predict_validate_observe_and_log(store, tmp_path):
    sample = rows(8)
    with serve(store, tmp_path, max_rows=5, max_body_bytes=4096) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        answered: dict[str, int] = {}

        def ok(doc: dict[str, Any], n: int) -> dict[str, Any]:
            response = client.post("/predict", json=doc)
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model_version"], body["model_alias"], body["route"]) == ("1", "champion", "champion")
            assert len(body["predictions"]) == n and len(body["probabilities"]) == n and body["classes"] == [0, 1]
            answered[body["request_id"]] = n
            return body

        single = ok({"records": sample[:1]}, 1)
        batch = ok({"records": sample[:5]}, 5)
        ok({"dataframe_records": sample[5:7]}, 2)
        columns = list(sample[0])
        ok({"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in sample[:3]]}}, 3)

        # The answers are the registered pipeline's own predictions.
        pipeline = Registry(store).load_model(MODEL, "1")
        expected = pd.DataFrame(sample[:5]).astype({"total_charges": float})
        assert batch["predictions"] == pipeline.predict(expected).tolist()
        assert np.allclose(batch["probabilities"], pipeline.predict_proba(expected))
        assert single["predictions"] == batch["predictions"][:1]

        refusals = [
            ({"json": {"records": [{**sample[0], "age": "abc"}]}}, 422, "record 0: field 'age' must be a number, got 'abc'"),
            ({"json": {"records": [sample[0], {k: v for k, v in sample[1].items() if k != "plan"}]}}, 422, "record 1: missing field 'plan'"),
            ({"json": {"records": [{**sample[0], "colour": "red"}]}}, 422, "record 0: unknown field 'colour'"),
            ({"json": {"records": [{**sample[0], "contract": 12}]}}, 422, "record 0: field 'contract' must be a string, got 12"),
            ({"json": {"records": []}}, 422, "no records"),
            ({"json": {"records": sample[:1] * 6}}, 422, "too many records: 6 > serving.max_rows 5"),
            ({"content": b""}, 422, "request body is empty"),
            ({"content": b'{"records": [{"age": 1'}, 400, "malformed JSON"),
            ({"content": b'{"records": ' + b"[]" * 3000 + b"}"}, 413, "over 4096 bytes"),
            ({"content": iter([b" " * 1000] * 6)}, 413, "over 4096 bytes"),  # chunked: no Content-Length
        ]
        for kwargs, status, text in refusals:
            response = client.post("/predict", headers={"Content-Type": "application/json"}, **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            assert text in response.json()["detail"], response.text
        assert client.post("/predict", json={"records": [{**sample[0], "age": "abc"}]}).json()["field"] == "age"

        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        details = ready.json()
        assert details["ready"] is True and details["registry_reachable"] is True and details["ready_for_swap"] is True
        assert details["models"]["champion"]["version"] == "1" and details["last_refresh"]

        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert metric(text, REQUESTS_TOTAL, model_version="1", route="champion") == len(answered)
        assert metric(text, REQUEST_ERRORS_TOTAL, model_version="1", route="champion") == 0
        assert metric(text, f"{REQUEST_LATENCY_SECONDS}_count", model_version="1", route="champion") == len(answered)
        assert f'{REQUEST_LATENCY_SECONDS}_bucket{{le="0.005",model="{MODEL}",model_version="1",route="champion"}}' in text
        assert metric(text, MODEL_INFO, alias="champion", version="1") == 1
        assert metric(text, REJECTED_REQUESTS_TOTAL, reason="invalid_type") == 3
        assert metric(text, REJECTED_REQUESTS_TOTAL, reason="body_too_large") == 2
        assert metric(text, REJECTED_REQUESTS_TOTAL, reason="malformed_json") == 1

        labels = [{"request_id": batch["request_id"], "row": r, "label": r % 2} for r in range(5)]
        assert client.post("/labels", json={"labels": labels}).json() == {"accepted": 5}

        assert server.stop() == 0, server.tail()

    log = read_prediction_log(server.log_uri)
    # Every answered request exactly once, every row of it, and nothing refused.
    assert log.groupby("request_id").size().to_dict() == answered
    assert set(log["model_version"]) == {"1"} and set(log["route"]) == {"champion"}
    logged = log[log["request_id"] == batch["request_id"]].sort_values("row")
    assert logged["prediction"].tolist() == batch["predictions"]
    assert logged["age"].tolist() == [float(r["age"]) for r in sample[:5]]
    joined = read_labelled_predictions(server.log_uri)
    assert sorted(zip(joined["row"], joined["label"], strict=True)) == [(r, r % 2) for r in range(5)]
    assert set(joined["request_id"]) == {batch["request_id"]}


def test_hot_swap_drops_nothing(store, tmp_path):
    sample = rows(50)
    with serve(store, tmp_path) as server:
        stop = threading.Event()
        seen: list[list[tuple[int, str | None]]] = [[] for _ in range(4)]
        failures: list[BaseException] = []

        def hammer(index: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    try:
                        response = client.post("/predict", json={"records": [sample[i % len(sample)]]})
                        version = response.json().get("model_version") if response.status_code == 200 else None
                        seen[index].append((response.status_code, version))
                    except Exception as err:  # a dropped connection is exactly what must not happen
                        failures.append(err)
                    i += 1

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            MlflowClient(tracking_uri=store, registry_uri=store).set_registered_model_alias(MODEL, ALIAS_CHAMPION, "2")
            deadline = time.monotonic() + 60
            while not all(len(s) > 5 and all(v == "2" for _, v in s[-5:]) for s in seen):
                assert time.monotonic() < deadline, "responses never switched to v2"
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)

        assert failures == []
        results = [r for s in seen for r in s]
        assert {status for status, _ in results} == {200}
        assert {version for _, version in results} == {"1", "2"}
        for sequence in seen:
            versions = [v for _, v in sequence]
            switch = versions.index("2")
            assert versions[:switch] == ["1"] * switch and set(versions[switch:]) == {"2"}  # never back
        text = httpx.get(f"{server.url}/metrics").text
        assert metric(text, MODEL_INFO, alias="champion", version="2") == 1
        assert f'{MODEL_INFO}{{alias="champion",version="1"}}' not in text
        assert metric(text, REQUEST_ERRORS_TOTAL, model_version="1", route="champion") == 0
        assert metric(text, REQUEST_ERRORS_TOTAL, model_version="2", route="champion") == 0
        assert server.stop() == 0, server.tail()

    log = read_prediction_log(server.log_uri)
    assert len(log) == len(results) == log["request_id"].nunique()
    assert log["model_version"].value_counts().to_dict() == {
        v: sum(1 for _, seen_v in results if seen_v == v) for v in ("1", "2")
    }


def test_canary_share_is_sticky_and_within_bounds(store, tmp_path):
    share, n = 0.3, 1000
    sample = rows(20)
    with serve(store, tmp_path, mode="canary", canary_share=share) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/ready").json()["models"]["canary"]["version"] == "2"

        def ask(key: str | None, i: int = 0) -> tuple[str, str, str]:
            headers = {"X-Request-Key": key} if key is not None else {}
            body = client.post("/predict", json={"records": [sample[i % 20]]}, headers=headers).json()
            return body["route"], body["model_version"], body["model_alias"]

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(lambda i: ask(f"customer-{i}", i), range(n)))
            again = list(pool.map(lambda i: ask(f"customer-{i}", i + 1), list(range(100)) * 3))
            keyless = list(pool.map(lambda i: ask(None, i), range(200)))

        canary = [r for r in first if r[0] == "canary"]
        assert {r[1:] for r in canary} == {("2", ALIAS_CHALLENGER)}
        assert {r[1:] for r in first if r[0] == "champion"} == {("1", ALIAS_CHAMPION)}
        assert abs(len(canary) - n * share) <= 4 * math.sqrt(n * share * (1 - share))
        for i, route in zip(list(range(100)) * 3, again, strict=True):
            assert route == first[i]  # the same key always lands on the same side
        assert {r[0] for r in keyless} == {"canary", "champion"}  # random per request without a key

        text = client.get("/metrics").text
        assert metric(text, REQUESTS_TOTAL, model_version="2", route="canary") == sum(
            r[0] == "canary" for r in first + again + keyless
        )
        assert metric(text, MODEL_INFO, alias=ALIAS_CHALLENGER, version="2") == 1


def test_shadow_mode_answers_with_champion_and_logs_both(store, tmp_path):
    sample = rows(10)
    with serve(store, tmp_path, mode="shadow") as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/ready").json()["models"]["canary"]["version"] == "2"
        bodies = [client.post("/predict", json={"records": sample[i : i + 2]}).json() for i in range(0, 10, 2)]
        assert {(b["model_version"], b["route"], b["model_alias"]) for b in bodies} == {("1", "champion", "champion")}
        deadline = time.monotonic() + 20
        while metric(client.get("/metrics").text, REQUESTS_TOTAL, model_version="2", route="shadow") < 5:
            assert time.monotonic() < deadline, "shadow scoring not counted"
            time.sleep(0.1)
        assert server.stop() == 0, server.tail()

    log = read_prediction_log(server.log_uri)
    ids = {b["request_id"] for b in bodies}
    for route, version in (("champion", "1"), ("shadow", "2")):
        part = log[log["route"] == route]
        assert set(part["request_id"]) == ids and len(part) == 10 and set(part["model_version"]) == {version}


def test_api_key_when_configured(store, tmp_path):
    key = "test-key-0123456789"
    with serve(store, tmp_path, env={"MLOPS_API_KEY": key}) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        doc = {"records": rows(1)}
        assert client.get("/health").status_code == 200
        assert client.post("/predict", json=doc).status_code == 401
        assert client.post("/predict", json=doc, headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/ready").status_code == 401
        assert client.post("/predict", json=doc, headers={"X-API-Key": key}).status_code == 200
        assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200
        server.stop()
        assert key not in server.output.read_text(errors="replace")


# -- many models in one app -----------------------------------------------------------------------

SPEND = "serving-spend"


@pytest.fixture(scope="module")
def two_models(registered: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn store plus a regressor of monthly charges (`serving-spend` v1 champion) on the same customers."""
    from mlops.config import ModelConfig

    home = tmp_path_factory.mktemp("serving-two-models")
    shutil.copy(registered, home / "mlflow.db")
    previous = os.getcwd()
    os.chdir(home)
    try:
        registry = Registry(f"sqlite:///{home / 'mlflow.db'}", artifact_root=home / "mlartifacts")
        frame = simulate_churn(1500, seed=3).drop(columns=["churned"])
        contract = infer_contract(frame, "monthly_charges", "event_time", "regression")
        model = ModelConfig(name=SPEND, task="regression", estimator="sklearn.linear_model.Ridge")
        register(registry, frame, contract, model, ALIAS_CHAMPION)
    finally:
        os.chdir(previous)
    return home / "mlflow.db"


def test_one_app_serves_a_classifier_and_a_regressor_each_with_its_own_model(two_models, tmp_path):
    shutil.copy(two_models, tmp_path / "mlflow.db")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    log_uri = str(tmp_path / "predictions")
    catalogue = tmp_path / "configs"
    catalogue.mkdir()
    serving = {"prediction_log_uri": log_uri, "refresh_seconds": 0.5}
    (catalogue / "a-churn.yaml").write_text(yaml.safe_dump({
        "dataset": {"uri": "unused.parquet", "target": "churned"}, "model": {"name": MODEL},
        "serving": {**serving, "default": True}}))
    (catalogue / "b-spend.yaml").write_text(yaml.safe_dump({
        "dataset": {"uri": "unused.parquet", "target": "monthly_charges"},
        "model": {"name": SPEND, "task": "regression", "estimator": "sklearn.linear_model.Ridge"}, "serving": serving}))
    (catalogue / "c-broken.yaml").write_text("model: [not, a, config\n")  # refused, the others still served
    churn_rows = rows(6)
    spend_rows = [{k: v for k, v in r.items() if k != "monthly_charges"} for r in churn_rows]
    with start_server(store, tmp_path, ["--catalogue", str(catalogue)], log_uri) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        default = client.post("/predict", json={"records": churn_rows}).json()
        churn = client.post(f"/models/{MODEL}/predict", json={"records": churn_rows}).json()
        spend = client.post(f"/models/{SPEND}/predict", json={"records": spend_rows})
        assert spend.status_code == 200, spend.text
        spend_body = spend.json()
        # B's answers are B's model's own predictions, never A's (A answers with classes, B with amounts).
        registry = Registry(store)
        expected_spend = registry.load_model(SPEND, "1").predict(pd.DataFrame(spend_rows).astype({"total_charges": float}))
        assert np.allclose(spend_body["predictions"], expected_spend)
        assert "classes" not in spend_body and not set(spend_body["predictions"]) <= {0, 1}
        expected_churn = registry.load_model(MODEL, "1").predict(pd.DataFrame(churn_rows).astype({"total_charges": float}))
        assert churn["predictions"] == default["predictions"] == expected_churn.tolist()
        # A's records do not fit B's contract, and the reverse.
        assert client.post(f"/models/{SPEND}/predict", json={"records": churn_rows}).status_code == 422
        assert client.post(f"/models/{MODEL}/predict", json={"records": spend_rows}).status_code == 422
        missing = client.post("/models/c-broken/predict", json={"records": churn_rows})
        assert missing.status_code == 404 and missing.json() == {"detail": "unknown model 'c-broken'"}
        # The Open Inference Protocol reaches the same model.
        meta = client.get(f"/v2/models/{SPEND}").json()
        types = {i["name"]: i["datatype"] for i in meta["inputs"]}
        inputs = [{"name": n, "shape": [len(spend_rows)], "datatype": t, "data": [r[n] for r in spend_rows]} for n, t in types.items()]
        v2 = client.post(f"/v2/models/{SPEND}/infer", json={"inputs": inputs}).json()
        assert v2["model_name"] == SPEND and np.allclose(v2["outputs"][0]["data"], expected_spend)
        ready = client.get("/ready").json()
        assert ready["default_model"] == MODEL and set(ready["catalogue"]) == {MODEL, SPEND}
        text = client.get("/metrics").text
        assert metric(text, REQUESTS_TOTAL, model=SPEND, model_version="1", route="champion") == 2
        assert metric(text, REQUESTS_TOTAL, model=MODEL, model_version="1", route="champion") == 2
        spec = client.get("/openapi.json").json()["components"]["schemas"]
        assert "monthly_charges" in spec[f"Record_{MODEL}"]["properties"]
        assert "monthly_charges" not in spec[f"Record_{SPEND}"]["properties"]
        assert server.stop() == 0, server.tail()
    assert "c-broken.yaml" in server.output.read_text()
    churn_log = read_prediction_log(model_log_uri(log_uri, MODEL))
    spend_log = read_prediction_log(model_log_uri(log_uri, SPEND))
    assert set(churn_log["model_name"]) == {MODEL} and set(spend_log["model_name"]) == {SPEND}
    assert set(spend_log["request_id"]) == {spend_body["request_id"], v2["parameters"]["request_id"]}
    assert set(churn_log["request_id"]) == {default["request_id"], churn["request_id"]}
