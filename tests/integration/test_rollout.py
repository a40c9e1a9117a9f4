"""Progressive rollouts on a running stack: the deploy flow, a real serving process, live traffic and labels.

Three versions are trained once into a store: v1 a gradient-boosted classifier, v2 a
DummyClassifier (always the majority class: about 7 points less accurate on this data) and v3
the same as v1. Each test copies the store, sets the champion, starts `python -m mlops.serving`
and sends it traffic from a thread: single-caller requests of 5 rows each, every answer labelled
with the truth a moment later, as a client that learns outcomes would. The deploy flow then
runs with `rollout.enabled`, reading the app's /metrics and its prediction log.

The offline gate is opened wide (promotion.tolerance) so that the live evidence alone decides:
that is what is under test. The erroring challenger is simulated by a fault injected into the
serving process only (a `sitecustomize` on its path makes v3 raise on every request), so the
smoke test, which runs in the flow's process, passes as it would for a model that breaks only
on production traffic.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from flows.deploy import deploy
from flows.train import train
from mlops.audit import ACTION_ROLLED_BACK, ACTION_ROLLOUT_STEP
from mlops.cli import main as cli_main
from mlops.config import PipelineConfig, parse_config
from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from mlops.registry import Registry
from mlops.serving.prediction_log import model_log_uri
from tests.integration.test_serving import start_server
from tests.timing import LENIENT_PROMOTION

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "churn-rollout"
ROWS_PER_REQUEST = 5
FAULT = '''
import os
from mlops.serving import scoring

_real = scoring.LoadedModel.score


def _failing(self, records):
    # The one-row warm-up at load passes: the version loads, then fails on every real request.
    if self.version == os.environ["MLOPS_TEST_FAILING_VERSION"] and len(records) > 1:
        raise RuntimeError("injected fault: this version fails on production traffic")
    return _real(self, records)


scoring.LoadedModel.score = _failing
'''


BOOSTED = {"name": MODEL, "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}}
DUMMY = {"name": MODEL, "estimator": "sklearn.dummy.DummyClassifier"}


def _config(data_uri: str, log_uri: str, model: dict[str, Any] = BOOSTED, **rollout: Any) -> PipelineConfig:
    return parse_config({
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": model,
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {},
        "promotion": {**LENIENT_PROMOTION, "tolerance": 1.0},
        "rollback": {"enabled": False},
        "serving": {"prediction_log_uri": log_uri, "refresh_seconds": 0.5},
        "rollout": {
            "enabled": True, "steps": ["shadow", 0.25, 0.5], "min_requests": 30, "min_labelled_rows": 1000,
            "poll_seconds": 1, "max_minutes_per_step": 4, "sequential_tau": 0.06,
            # Shadow bounds wide open, except where a test is about them: labels decide here.
            "min_agreement": 0.0, "max_score_distance": 1.0,
            # Latency on a shared 2-core machine is the machine's; the p99 rule has its unit tests.
            "max_p99_ratio": 20.0, **rollout,
        },
    })


@pytest.fixture(scope="module")
def trained(prefect_api, mlflow_template, tmp_path_factory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("rollout-home")
    shutil.copy(mlflow_template, home / "mlflow.db")
    data_uri = write_frame(simulate_churn(3000, seed=41), str(home / "data.parquet"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        log_uri = str(home / "unused-log")
        for model in (BOOSTED, DUMMY, BOOSTED):
            config = _config(data_uri, log_uri, model)
            assert train(config=config, return_state=True).is_completed()
    return home, data_uri


@pytest.fixture
def stack(trained, tmp_path, monkeypatch) -> dict[str, Any]:
    """A private copy of the store; the deploy flow in this process and a serving app share it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(trained[0] / "mlflow.db", home / "mlflow.db")
    store = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return {"store": store, "data_uri": trained[1], "tmp": tmp_path, "log_uri": str(tmp_path / "predictions")}


@contextmanager
def serving(stack: dict[str, Any], config: PipelineConfig, fault_version: str | None = None) -> Iterator[Any]:
    path = stack["tmp"] / "serving.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env: dict[str, str] = {}
    if fault_version is not None:
        faults = stack["tmp"] / "faults"
        faults.mkdir()
        (faults / "sitecustomize.py").write_text(FAULT)
        env.update(PYTHONPATH=str(faults), MLOPS_TEST_FAILING_VERSION=fault_version)
    with start_server(stack["store"], stack["tmp"], ["--config", str(path)],
                      model_log_uri(stack["log_uri"], MODEL), env) as server:
        yield server


class Traffic(threading.Thread):
    """Callers with labelled outcomes: each request is one new caller of 5 rows, labelled once answered."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        frame = simulate_churn(4000, seed=43)
        self.truth = frame["churned"].tolist()
        features = frame.drop(columns=["churned", "event_time"])
        self.rows = features.astype(object).where(features.notna(), None).to_dict(orient="records")
        self.url, self.stop = url, threading.Event()
        self.answers: dict[tuple[str, str], int] = {}
        self.failures = self.label_failures = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            start = 0
            while not self.stop.is_set():
                batch = [(start + i) % len(self.rows) for i in range(ROWS_PER_REQUEST)]
                start += ROWS_PER_REQUEST
                response = client.post("/predict", json={"records": [self.rows[i] for i in batch]},
                                       headers={"X-Request-Key": uuid.uuid4().hex})
                if response.status_code != 200:
                    self.failures += 1
                    continue
                body = response.json()
                key = (body["model_version"], body["route"])
                self.answers[key] = self.answers.get(key, 0) + 1
                labels = [{"request_id": body["request_id"], "row": row, "label": self.truth[i]}
                          for row, i in enumerate(batch)]
                if client.post("/labels", json={"labels": labels}).status_code != 200:
                    self.label_failures += 1

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(timeout=30)


def _champion(store: str, version: str) -> None:
    MlflowClient(tracking_uri=store, registry_uri=store).set_registered_model_alias(MODEL, "champion", version)


def _aliases(store: str) -> dict[str, str]:
    model = MlflowClient(tracking_uri=store, registry_uri=store).get_registered_model(MODEL)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _rollout(stack: dict[str, Any], config: PipelineConfig, champion: str, challenger: str,
             monkeypatch: pytest.MonkeyPatch, fault_version: str | None = None) -> tuple[Any, Traffic]:
    _champion(stack["store"], champion)
    with serving(stack, config, fault_version) as server, Traffic(server.url) as traffic:
        monkeypatch.setenv("MLOPS_SERVING_URL", server.url)
        state = deploy(config=config, challenger_version=challenger, watch_seconds=0, return_state=True)
        assert state.is_completed(), state.message
        result = state.result()
        # The split is gone once the run ends: every caller is the champion's again.
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/ready").json().get("rollout") is not None:
            assert time.monotonic() < deadline, "serving still routes by the ended rollout"
            time.sleep(0.2)
    assert traffic.label_failures == 0
    return result, traffic


def _steps(store: str) -> list[Any]:
    return [r for r in Registry(store).read_audit(MODEL) if r.action == ACTION_ROLLOUT_STEP]


def test_a_challenger_worse_on_labels_is_aborted_at_an_early_step_and_the_champion_keeps_all_traffic(stack, monkeypatch):
    config = _config(stack["data_uri"], stack["log_uri"])
    result, traffic = _rollout(stack, config, champion="1", challenger="2", monkeypatch=monkeypatch)

    assert result.status == "rolled-back" and result.champion_version == "1", result.reason
    assert "aborted at 25% of traffic" in result.reason and "challenger worse" in result.reason
    assert _aliases(stack["store"])["champion"] == "1"
    steps = _steps(stack["store"])
    assert [(r.evidence["step"], r.decision["action"]) for r in steps] == [("shadow", "advance"), (0.25, "abort")]
    abort = steps[-1].evidence["live"]
    assert abort["challenger"]["outcomes"]["mean"] < abort["champion"]["outcomes"]["mean"]
    assert steps[-1].decision["sequential"]["verdict"] == "worse"
    final = [r for r in Registry(stack["store"]).read_audit(MODEL) if r.action == ACTION_ROLLED_BACK][-1]
    assert (final.from_version, final.to_version) == ("2", "1") and final.evidence["rollout"]["steps"]
    # Callers really were split: the challenger answered some of them before the abort.
    assert traffic.answers.get(("2", "canary"), 0) > 0 and traffic.failures == 0


def test_a_better_challenger_passes_every_step_and_is_promoted(stack, monkeypatch, capsys):
    config = _config(stack["data_uri"], stack["log_uri"])
    result, traffic = _rollout(stack, config, champion="2", challenger="1", monkeypatch=monkeypatch)

    assert result.status == "promoted" and result.champion_version == "1", result.reason
    assert _aliases(stack["store"])["champion"] == "1"
    assert [(r.evidence["step"], r.decision["action"]) for r in _steps(stack["store"])] == [
        ("shadow", "advance"), (0.25, "advance"), (0.5, "promote")]
    assert traffic.answers.get(("1", "canary"), 0) > 0 and traffic.failures == 0
    # `mlops rollout status` shows the finished rollout's steps; history lists them too.
    config_path = stack["tmp"] / "model.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert cli_main(["rollout", "status", "--config", str(config_path), "--json"]) == 0
    import json

    status = json.loads(capsys.readouterr().out)
    assert status["active"] is False and [s["action"] for s in status["steps"]] == ["advance", "advance", "promote"]
    assert cli_main(["history", "--config", str(config_path)]) == 0
    assert capsys.readouterr().out.count(ACTION_ROLLOUT_STEP) == 3


def test_a_challenger_that_errors_on_live_traffic_is_rolled_back_in_shadow(stack, monkeypatch):
    config = _config(stack["data_uri"], stack["log_uri"])
    result, traffic = _rollout(stack, config, champion="1", challenger="3", monkeypatch=monkeypatch, fault_version="3")

    assert result.status == "rolled-back" and result.champion_version == "1", result.reason
    assert "aborted at shadow" in result.reason and "error rate" in result.reason
    assert _aliases(stack["store"])["champion"] == "1"
    steps = _steps(stack["store"])
    assert [(r.evidence["step"], r.decision["action"]) for r in steps] == [("shadow", "abort")]
    assert steps[0].evidence["live"]["challenger"]["errors"] > 0
    # In shadow no caller ever saw the failing version: every request was answered by v1.
    assert set(traffic.answers) == {("1", "champion")} and traffic.failures == 0


def test_approval_before_full_traffic_times_out_after_the_steps_and_the_champion_stays(stack, monkeypatch):
    # `at: before-full`: asked once every step has passed; no answer refuses, and the split ends.
    config = _config(stack["data_uri"], stack["log_uri"], steps=[0.25])
    config = config.model_copy(update={"approval": config.approval.model_copy(
        update={"required": True, "timeout_minutes": 0.05, "at": "before-full"})})
    result, _ = _rollout(stack, config, champion="2", challenger="1", monkeypatch=monkeypatch)

    assert result.status == "refused" and "approval timed out" in result.reason, result.reason
    assert _aliases(stack["store"])["champion"] == "2"
    assert [(r.evidence["step"], r.decision["action"]) for r in _steps(stack["store"])] == [(0.25, "promote")]
    refusal = Registry(stack["store"]).read_audit(MODEL)[-1]
    assert refusal.evidence["approval"]["timed_out"] and refusal.evidence["rollout"]["steps"][0]["action"] == "promote"
