"""The serving app in-process (ASGI, fake registry): status codes, bodies, metrics, auth, routes.

The same behaviour over real HTTP against a real MLflow registry is in
tests/integration/test_serving.py; these run in a second and cover the branches.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
import pytest

from mlops.config import Settings, parse_config
from mlops.promotion.split import TrafficSplit
from mlops.serving.app import create_app
from mlops.serving.metrics import (
    DEAD_LETTER_ROWS_TOTAL,
    MODEL_INFO,
    REJECTED_REQUESTS_TOTAL,
    REQUEST_ERRORS_TOTAL,
    REQUEST_LATENCY_SECONDS,
    REQUESTS_TOTAL,
)
from mlops.serving.prediction_log import (
    label_columns,
    model_log_uri,
    read_labelled_predictions,
    read_prediction_log,
)
from mlops.serving.wal import SegmentDir, destination_dir
from tests.unit.test_serving_models import FakeRegistry, fitted

with warnings.catch_warnings():
    # Starlette nudges towards `httpx2`; the pinned httpx works and is what the project locks.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

JSON = {"Content-Type": "application/json"}
ROW = {
    "age": 40, "tenure_months": 12, "monthly_charges": 70.5, "total_charges": None,
    "support_calls": 1, "num_products": 2, "contract": "one-year", "plan": "basic",
    "payment_method": "card", "region": "north",
}


def config(tmp_path, **serving: Any):
    return parse_config(
        {
            "dataset": {"uri": "x.parquet", "target": "churned"},
            "model": {"name": "churn"},
            "serving": {"prediction_log_uri": str(tmp_path / "log"), "refresh_seconds": 0.05, **serving},
        }
    )


def log_of(tmp_path) -> str:
    """The churn model's partition of the test's prediction log."""
    return model_log_uri(str(tmp_path / "log"), "churn")


@contextmanager
def serve(
    tmp_path, registry: FakeRegistry, ready: bool = True, headers: dict[str, str] | None = None, **serving: Any
) -> Iterator[TestClient]:
    """The app with its lifespan running (refresher, log writers); stopping it flushes the log."""
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"))
    app = create_app(config(tmp_path, **serving), "unused://", registry_factory=lambda: registry, settings=settings)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        if ready:
            wait_for(lambda: client.get("/ready", headers=headers or {}).status_code == 200)
        yield client


def wait_for(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def metric(client: TestClient, name: str, model: str = "churn", **labels: str) -> float:
    """The value of one series of `model` in /metrics (every series has a model label), 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "model": model}.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and line.split("{", 1)[1].split("}", 1)[0] == want:
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_predict_answers_with_version_alias_and_probabilities(tmp_path):
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        response = client.post("/predict", json={"records": [ROW, {**ROW, "support_calls": 6}]})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"predictions", "probabilities", "classes", "model_version", "model_alias", "route", "request_id"}
        assert (body["model_version"], body["model_alias"], body["route"]) == ("1", "champion", "champion")
        assert body["classes"] == [0, 1] and len(body["probabilities"]) == 2
        assert all(abs(sum(p) - 1.0) < 1e-9 for p in body["probabilities"])
        assert response.headers["X-Request-ID"] == body["request_id"]
        # The same pipeline, called directly, agrees.
        pipeline, _ = fitted(1)
        import pandas as pd

        frame = pd.DataFrame([ROW, {**ROW, "support_calls": 6}]).astype({"total_charges": float})
        assert body["predictions"] == pipeline.predict(frame).tolist()
        assert np.allclose(body["probabilities"], pipeline.predict_proba(frame))
        assert metric(client, REQUESTS_TOTAL, model_version="1", route="champion") == 1
        assert metric(client, MODEL_INFO, alias="champion", version="1") == 1
        assert metric(client, f"{REQUEST_LATENCY_SECONDS}_count", model_version="1", route="champion") == 1


def test_refusals_carry_status_detail_and_reason(tmp_path):
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"}), max_rows=2, max_body_bytes=2048) as client:
        cases = [
            (client.post("/predict", json={"records": [{**ROW, "age": "abc"}]}), 422, "record 0: field 'age' must be a number, got 'abc'"),
            (client.post("/predict", json={"records": [ROW, ROW, ROW]}), 422, "too many records: 3 > serving.max_rows 2"),
            (client.post("/predict", content=b"{oops", headers=JSON), 400, "malformed JSON"),
            (client.post("/predict", content=b"", headers=JSON), 422, "request body is empty"),
            (client.post("/predict", json={"records": []}), 422, "no records"),
            (client.post("/predict", content=b"x" * 3000, headers=JSON), 413, "over 2048 bytes"),
        ]
        for response, status, text in cases:
            assert response.status_code == status, response.text
            assert text in response.json()["detail"]
        assert client.post("/predict", json={"records": [{**ROW, "age": "abc"}]}).json()["field"] == "age"
        assert metric(client, REJECTED_REQUESTS_TOTAL, reason="invalid_type") == 2
        assert metric(client, REJECTED_REQUESTS_TOTAL, reason="body_too_large") == 1
        assert metric(client, REQUESTS_TOTAL, model_version="1", route="champion") == 0


def test_body_limit_counts_the_bytes_actually_sent(tmp_path):
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"}), max_body_bytes=2048) as client:
        def chunks():
            for _ in range(10):
                yield b" " * 500

        # A generator body goes out chunked: no Content-Length to trust.
        response = client.post("/predict", content=chunks(), headers=JSON)
        assert response.status_code == 413
        bad_length = client.post("/predict", content=b"12", headers={**JSON, "Content-Length": "abc"})
        assert bad_length.status_code == 400 and "Content-Length" in bad_length.json()["detail"]


def test_ready_is_503_until_a_champion_loads_and_predict_too(tmp_path):
    registry = FakeRegistry()
    with serve(tmp_path, registry, ready=False) as client:
        assert client.get("/health").json() == {"status": "ok"}
        wait_for(lambda: client.get("/ready").json()["last_refresh"] is not None)
        response = client.get("/ready")
        assert response.status_code == 503 and response.json()["ready"] is False
        assert client.post("/predict", json={"records": [ROW]}).status_code == 503
        assert client.post("/labels", json={"labels": [{"request_id": "a", "row": 0, "label": 1}]}).status_code == 503
        registry.aliases["champion"] = "1"
        wait_for(lambda: client.get("/ready").status_code == 200)
        assert client.post("/predict", json={"records": [ROW]}).json()["model_version"] == "1"


def test_unreachable_registry_keeps_serving_and_ready_says_why(tmp_path):
    registry = FakeRegistry(aliases={"champion": "1"})
    with serve(tmp_path, registry) as client:
        registry.reachable = False
        wait_for(lambda: client.get("/ready").json()["registry_reachable"] is False)
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["ready_for_swap"] is False and "ConnectionError" in ready.json()["last_error"]
        assert client.post("/predict", json={"records": [ROW]}).status_code == 200


def test_alias_move_swaps_the_model_between_requests(tmp_path):
    registry = FakeRegistry(aliases={"champion": "1"})
    with serve(tmp_path, registry) as client:
        assert client.post("/predict", json={"records": [ROW]}).json()["model_version"] == "1"
        registry.aliases["champion"] = "2"
        wait_for(lambda: client.post("/predict", json={"records": [ROW]}).json()["model_version"] == "2")
        assert metric(client, MODEL_INFO, alias="champion", version="2") == 1
        assert metric(client, MODEL_INFO, alias="champion", version="1") == 0


def test_api_key_guards_everything_but_health(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_API_KEY", "s3cret-key")
    good = {"X-API-Key": "s3cret-key"}
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"}), headers=good) as client:
        assert client.get("/health").status_code == 200
        for method, path in (("GET", "/ready"), ("GET", "/metrics"), ("POST", "/predict"), ("POST", "/labels")):
            assert client.request(method, path).status_code == 401
            assert client.request(method, path, headers={"X-API-Key": "wrong"}).status_code == 401
        response = client.post("/predict", json={"records": [ROW]}, headers=good)
        assert response.status_code == 200
        assert "s3cret-key" not in client.get("/metrics", headers=good).text


def test_canary_mode_routes_its_share_to_the_canary_alias(tmp_path):
    registry = FakeRegistry(aliases={"champion": "1", "challenger": "2"})
    with serve(tmp_path, registry, mode="canary", canary_share=1.0) as client:
        wait_for(lambda: client.get("/ready").json()["models"]["canary"] is not None)
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["model_alias"], body["route"]) == ("2", "challenger", "canary")
        assert metric(client, REQUESTS_TOTAL, model_version="2", route="canary") == 1
        assert metric(client, MODEL_INFO, alias="challenger", version="2") == 1


def test_shadow_mode_scores_silently_and_logs_both(tmp_path):
    registry = FakeRegistry(aliases={"champion": "1", "challenger": "2"})
    with serve(tmp_path, registry, mode="shadow") as client:
        wait_for(lambda: client.get("/ready").json()["models"]["canary"] is not None)
        ids = [client.post("/predict", json={"records": [ROW, ROW]}).json() for _ in range(3)]
        assert {(b["model_version"], b["route"]) for b in ids} == {("1", "champion")}
        wait_for(lambda: metric(client, REQUESTS_TOTAL, model_version="2", route="shadow") == 3)
    log = read_prediction_log(log_of(tmp_path))
    assert sorted(log.groupby(["route", "model_version"]).size().items()) == [(("champion", "1"), 6), (("shadow", "2"), 6)]
    assert set(log["request_id"]) == {b["request_id"] for b in ids}


def _split(version: str, steps: list, index: int) -> str:
    stamp = "2026-12-02T00:00:00+00:00"
    return TrafficSplit("churn", version, "1", steps, index, stamp, stamp).to_tag()


def test_the_registry_split_moves_traffic_without_a_restart_and_its_end_gives_it_back(tmp_path):
    # Configured champion-only: the rollout's tag alone sends the challenger shadow, then real, traffic.
    registry = FakeRegistry(aliases={"champion": "1"})
    with serve(tmp_path, registry) as client:
        assert client.post("/predict", json={"records": [ROW]}).json()["route"] == "champion"
        registry.split = _split("2", ["shadow", 1.0], 0)
        wait_for(lambda: (client.get("/ready").json()["models"].get("canary") or {}).get("version") == "2")
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["route"]) == ("1", "champion")
        wait_for(lambda: metric(client, REQUESTS_TOTAL, model_version="2", route="shadow") == 1)
        assert client.get("/ready").json()["rollout"]["step"] == "shadow"

        registry.split = _split("2", ["shadow", 1.0], 1)
        wait_for(lambda: client.get("/ready").json()["rollout"]["challenger_share"] == 1.0)
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["model_alias"], body["route"]) == ("2", "rollout", "canary")

        registry.split = None
        wait_for(lambda: client.get("/ready").json()["models"].get("canary") is None)
        assert client.get("/ready").json()["rollout"] is None
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["route"]) == ("1", "champion")


def test_a_broken_split_tag_sends_the_challenger_nothing_and_says_why(tmp_path):
    registry = FakeRegistry(aliases={"champion": "1"}, split='{"version": "2"}')
    with serve(tmp_path, registry) as client:
        wait_for(lambda: "mlops.rollout" in (client.get("/ready").json().get("last_error") or ""))
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["route"]) == ("1", "champion")


def test_a_pathological_split_tag_is_champion_only_said_in_ready_and_alias_moves_go_on(tmp_path):
    # A fresh replica meeting a tag nested 5,000 deep used to find no champion at all (503).
    registry = FakeRegistry(aliases={"champion": "1"}, split="[" * 5000 + "]" * 5000)
    with serve(tmp_path, registry) as client:
        ready = client.get("/ready").json()
        assert ready["models"]["champion"]["version"] == "1" and ready["registry_reachable"]
        assert ready["rollout"] is None and ready["rollout_error"] == (
            "BrokenSplit: tag mlops.rollout is not a traffic split: nested too deep; serving the champion only")
        assert client.post("/predict", json={"records": [ROW]}).json()["route"] == "champion"

        # A rollout in progress whose tag turns to nonsense gives its traffic back to the champion.
        registry.split = _split("2", [1.0], 0)
        wait_for(lambda: (client.get("/ready").json()["rollout"] or {}).get("challenger_share") == 1.0)
        assert client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()["route"] == "canary"
        registry.split = _split("2", [1.0], 0).replace('"version": "2"', '"version": "2\\u001b[2J"')
        wait_for(lambda: client.get("/ready").json()["models"].get("canary") is None)
        ready = client.get("/ready").json()
        assert ready["rollout"] is None and "version: not a version number" in ready["rollout_error"]
        assert ready["rollout_error"].isprintable()
        body = client.post("/predict", json={"records": [ROW]}, headers={"X-Request-Key": "k1"}).json()
        assert (body["model_version"], body["route"]) == ("1", "champion")

        # ... and the champion's alias moves are still picked up.
        registry.aliases["champion"] = "3"
        wait_for(lambda: client.get("/ready").json()["models"]["champion"]["version"] == "3")
        registry.split = None
        wait_for(lambda: client.get("/ready").json()["rollout_error"] is None)


def test_prediction_failure_is_a_500_and_an_error_count(tmp_path, monkeypatch):
    from mlops.serving import scoring

    real = scoring.LoadedModel.score

    def flaky(self, records):
        if any(r["age"] == 99.0 for r in records):
            raise RuntimeError("model exploded")
        return real(self, records)

    monkeypatch.setattr(scoring.LoadedModel, "score", flaky)
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        response = client.post("/predict", json={"records": [{**ROW, "age": 99}]})
        assert response.status_code == 500
        assert response.json()["detail"] == "prediction failed (RuntimeError)" and response.json()["request_id"]
        assert client.post("/predict", json={"records": [ROW]}).status_code == 200
        assert metric(client, REQUEST_ERRORS_TOTAL, model_version="1", route="champion") == 1
        assert metric(client, REQUESTS_TOTAL, model_version="1", route="champion") == 2


def test_a_failure_outside_the_predict_call_is_a_500_but_not_an_error_of_the_version(tmp_path, monkeypatch):
    from mlops.serving.metrics import SERVICE_ERRORS_TOTAL
    from mlops.serving.state import ModelService

    def broken(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug around the model")

    # A fault of the service's own code that a request can reach: counted against the version, any
    # client could raise the champion's error rate until the post-deployment watch rolled it back.
    monkeypatch.setattr(ModelService, "log_prediction", broken)
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        response = client.post("/predict", json={"records": [ROW]})
        assert response.status_code == 500 and response.json() == {"detail": "internal error"}
        assert metric(client, REQUEST_ERRORS_TOTAL, model_version="1", route="champion") == 0
        assert metric(client, SERVICE_ERRORS_TOTAL, reason="internal_error") == 1


def test_every_answered_row_and_label_is_logged_on_shutdown(tmp_path):
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        bodies = [client.post("/predict", json={"records": [ROW] * n}).json() for n in (1, 3, 2)]
        client.post("/predict", json={"records": [{**ROW, "age": "x"}]})  # refused: not logged
        labels = [{"request_id": bodies[1]["request_id"], "row": r, "label": r % 2} for r in range(3)]
        response = client.post("/labels", json={"labels": labels})
        assert response.json() == {"accepted": 3}
        bad = client.post("/labels", json={"labels": [{"request_id": "a", "row": 0, "label": "maybe"}]})
        assert bad.status_code == 422 and bad.json()["field"] == "label"
    log = read_prediction_log(log_of(tmp_path))
    assert log.groupby("request_id").size().to_dict() == {b["request_id"]: n for b, n in zip(bodies, (1, 3, 2), strict=True)}
    assert set(log["model_version"]) == {"1"} and set(log["route"]) == {"champion"}
    first = log[log["request_id"] == bodies[1]["request_id"]].sort_values("row")
    assert first["prediction"].tolist() == bodies[1]["predictions"]
    joined = read_labelled_predictions(log_of(tmp_path))
    assert sorted(zip(joined["row"], joined["label"], strict=True)) == [(0, 0), (1, 1), (2, 0)]


@pytest.mark.parametrize("fmt", ["dataframe_records", "dataframe_split"])
def test_mlflow_body_formats(tmp_path, fmt):
    doc: dict[str, Any] = (
        {"dataframe_records": [ROW]}
        if fmt == "dataframe_records"
        else {"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}}
    )
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        response = client.post("/predict", json=doc)
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1


@pytest.mark.parametrize("path", ["/predict", "/labels"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"])
def test_a_body_not_declared_json_is_415_and_never_logged(tmp_path, path, content_type):
    # What a web page can send to any address without the browser asking first: valid JSON inside.
    doc = {"records": [ROW]} if path == "/predict" else {"labels": [{"request_id": "a", "row": 0, "label": 1}]}
    headers = {"Content-Type": content_type} if content_type else {}
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        response = client.post(path, content=orjson.dumps(doc), headers=headers)
        assert response.status_code == 415, response.text
        shown = f"'{content_type}'" if content_type else "none"
        assert response.json() == {"detail": f"Content-Type must be application/json, got {shown}"}
        assert metric(client, REJECTED_REQUESTS_TOTAL, reason="unsupported_media_type") == 1
        charset = client.post(path, content=orjson.dumps(doc), headers={"Content-Type": "application/json; charset=utf-8"})
        assert charset.status_code == 200
    assert len(read_prediction_log(log_of(tmp_path))) == (1 if path == "/predict" else 0)


def test_ready_is_503_when_the_log_cannot_keep_what_it_accepts(tmp_path):
    # Another process holds this destination's write-ahead segments: rows would be at risk.
    log_uri = log_of(tmp_path)
    holder = SegmentDir(destination_dir((tmp_path / "home" / "serving-wal").resolve(), log_uri) / "predictions")
    holder.acquire()
    try:
        with serve(tmp_path, FakeRegistry(aliases={"champion": "1"}), ready=False) as client:
            wait_for(lambda: client.get("/ready").json()["models"]["champion"] is not None)
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            log = ready.json()["prediction_log"]
            assert log["status"] == "failing" and "in use by another serving process" in log["last_error"]
            assert log["labels"]["status"] == "ok"
    finally:
        holder.release()
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        log = client.get("/ready").json()["prediction_log"]
        assert log["status"] == "ok" and log["write_ahead_dir"] == str((tmp_path / "home" / "serving-wal").resolve())


def test_dead_lettered_rows_are_counted_in_metrics(tmp_path):
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        state = client.app.state.serving
        # Past the door's checks (as a future bug might be): the writer isolates the row.
        state.labels.append(label_columns([("a", 0, 1), ("b", 2**64 - 1, 1)], time.time()), 2)
    text = state.metrics.render().decode()
    assert f'{DEAD_LETTER_ROWS_TOTAL}{{model="churn",store="labels"}} 1.0' in text
    assert state.labels.written_rows == 1


def test_predict_and_labels_refuse_with_503_while_the_write_ahead_disk_is_full(tmp_path):
    from tests.unit.test_serving_prediction_log import wal_disk

    labels = {"labels": [{"request_id": "a", "row": 0, "label": 1}]}
    with wal_disk((tmp_path / "home" / "serving-wal").resolve()) as disk:
        with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
            assert client.post("/predict", json={"records": [ROW]}).status_code == 200
            disk.free = 0
            refused = client.post("/predict", json={"records": [ROW, ROW]})
            assert refused.status_code == 503, refused.text
            assert refused.json()["detail"].startswith("the prediction log cannot keep these rows: OSError: [Errno 28]")
            assert client.post("/labels", json=labels).status_code == 503
            assert metric(client, REJECTED_REQUESTS_TOTAL, reason="log_unavailable") == 2
            assert metric(client, REQUEST_ERRORS_TOTAL, model_version="1", route="champion") == 0  # not the model's fault
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["prediction_log"]["status"] == "failing"
            disk.free = None
            wait_for(lambda: client.get("/ready").status_code == 200)  # the writer finds room again
            assert client.post("/predict", json={"records": [ROW]}).status_code == 200
    assert len(read_prediction_log(log_of(tmp_path))) == 2  # the two acknowledged rows, once each


def test_a_segment_record_that_is_not_rows_is_a_counted_dead_letter_and_the_log_goes_on(tmp_path):
    from tests.unit.test_serving_prediction_log import good_record, leave_segment

    # What a previous process (or a damaged disk) left: the meaningless record that stalled the log.
    wal_dir = (tmp_path / "home" / "serving-wal").resolve()
    leave_segment(wal_dir, log_of(tmp_path), {"c": 1, "n": 1, "f": []}, good_record("left"))
    with serve(tmp_path, FakeRegistry(aliases={"champion": "1"})) as client:
        wait_for(lambda: metric(client, DEAD_LETTER_ROWS_TOTAL, store="predictions") == 1)
        assert client.post("/predict", json={"records": [ROW]}).status_code == 200
        log = client.get("/ready").json()["prediction_log"]
        assert log["status"] == "ok" and log["dead_letter_rows"] == 1 and log["written_rows"] == 1
    assert read_prediction_log(log_of(tmp_path))["request_id"].str.len().tolist() == [4, 32]  # "left", then ours
