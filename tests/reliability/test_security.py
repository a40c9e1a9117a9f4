"""Secrets stay out of everything a run writes; models load only through skops and our allow-list.

One module-scoped store is trained and deployed (in-process flows, the session's Prefect server)
with fake secrets in the environment; the tests then read back every place a run writes to.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
import skops.io
from mlflow import MlflowClient

from flows.deploy import deploy
from flows.train import train
from mlops.config import Settings
from mlops.errors import RegistryError
from mlops.registry import SKOPS_FILE, ModelRef, Registry
from mlops.serving.app import create_app
from tests.reliability.flows_setup import flow_config, new_home
from tests.unit.test_serving_app import ROW, wait_for

MODEL = "churn-secrets"
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEY7QXW2LMNP",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-9f8e7d6c5b4a",
    "MLOPS_API_KEY": "fake-serving-key-4b3a2c1d",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-8h7g",
}


@pytest.fixture(scope="module")
def deployed(prefect_api, mlflow_template, tmp_path_factory):
    """Train and deploy v1 with the secrets set; (home, tracking uri, config, flow run ids)."""
    home, uri, data_uri = new_home(tmp_path_factory, mlflow_template, "secrets-home", seed=5)
    config = flow_config(MODEL, data_uri, serving={
        "prediction_log_uri": str(home / "predictions"), "refresh_seconds": 0.2,
    })
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for name, value in SECRETS.items():
            mp.setenv(name, value)
        trained = train(config=config, return_state=True)
        assert trained.is_completed(), trained.message
        deployed = deploy(config=config, return_state=True)
        assert deployed.is_completed(), deployed.message
        assert deployed.result().status == "promoted"
        runs = [str(s.state_details.flow_run_id) for s in (trained, deployed)]
    return home, uri, config, runs


def _leaks(text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{name} in {where}" for name, value in SECRETS.items() if value.encode() in data]


def test_no_secret_in_mlflow_runs_versions_or_artifacts(deployed, tmp_path):
    home, uri, _, _ = deployed
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    leaks, names = [], set()
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            leaks += _leaks(repr(run.data.params) + repr(run.data.tags), f"run {run.info.run_id} params/tags")
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        leaks += _leaks(repr(version.tags), f"version {version.version} tags")
    # Every artifact of every run (reports, plots, the model, the audit log) lives under the home.
    for path in home.rglob("*"):
        if path.is_file() and path.name != "mlflow.db":
            names.add(path.name)
            leaks += _leaks(path.read_bytes(), str(path.relative_to(home)))
    leaks += _leaks((home / "mlflow.db").read_bytes(), "the MLflow database")
    # The scan reached what a run writes: config, validation report, model, audit record.
    assert {"pipeline.json", "report.json", SKOPS_FILE, "MLmodel"} <= names, names
    assert any(name.endswith(".json") and "-" in name for name in names), "no audit record found"
    assert leaks == []


def test_no_secret_in_prefect_logs_artifacts_or_parameters(deployed):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    _, _, _, runs = deployed
    APILogWorker.drain_all(timeout=10)

    async def read() -> tuple[list, list, list]:
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs)))
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=runs))
            )
            flow_runs = [await client.read_flow_run(run) for run in runs]
            return logs, artifacts, flow_runs

    logs, artifacts, flow_runs = asyncio.run(read())
    assert logs and artifacts, "nothing to scan: logs or artifacts were not recorded"
    leaks = []
    for log in logs:
        leaks += _leaks(log.message, f"log of flow run {log.flow_run_id}")
    for artifact in artifacts:
        leaks += _leaks(f"{artifact.data} {artifact.description}", f"artifact {artifact.key}")
    for run in flow_runs:
        leaks += _leaks(repr(run.parameters), f"parameters of flow run {run.id}")
    assert leaks == []


def test_no_secret_in_the_prediction_log_or_serving_answers(deployed, monkeypatch, tmp_path):
    from starlette.testclient import TestClient

    home, uri, config, _ = deployed
    monkeypatch.setenv("MLOPS_API_KEY", SECRETS["MLOPS_API_KEY"])
    key = {"X-API-Key": SECRETS["MLOPS_API_KEY"]}
    bodies = []
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"))
    with TestClient(create_app(config, uri, settings=settings), base_url="http://127.0.0.1") as client:
        wait_for(lambda: client.get("/ready", headers=key).status_code == 200, timeout=60)
        assert client.post("/predict", json={"records": [ROW]}).status_code == 401
        for _ in range(3):
            response = client.post("/predict", json={"records": [ROW, ROW]}, headers=key)
            assert response.status_code == 200
            bodies.append(response.text)
        bodies += [client.get("/ready", headers=key).text, client.get("/metrics", headers=key).text]
    logged = [p for p in (home / "predictions").rglob("*.parquet")]
    assert logged, "the prediction log is empty"
    leaks = [leak for body in bodies for leak in _leaks(body, "a response")]
    leaks += [leak for path in logged for leak in _leaks(path.read_bytes(), str(path))]
    assert leaks == []


def test_urls_built_from_the_tracking_uri_drop_its_password():
    registry = Registry("http://ops:fake-url-password@127.0.0.1:1")
    url = registry.version_url(ModelRef(MODEL, "1", None, "models:/x"))
    assert url is not None and "fake-url-password" not in url and url.startswith("http://127.0.0.1:1/")


# -- tampered artifacts ------------------------------------------------------------------------


class _Evil:
    """Stands for any type outside the allow-list (skops names it by module and qualified name)."""

    def __init__(self) -> None:
        self.payload = "would run on load"


def _tampered_copy(client: MlflowClient, home: Path, into: Path, how: str) -> str:
    """Register a new version whose artifact is v1's with the skops file replaced; return it."""
    v1 = client.get_model_version(MODEL, "1")
    original = next((home / "mlartifacts").rglob(SKOPS_FILE)).parent
    copy = into / f"tampered-{how}"
    shutil.copytree(original, copy)
    target = copy / SKOPS_FILE
    if how == "untrusted-type":
        model = skops.io.load(target, trusted=skops.io.get_untrusted_types(file=target))
        model.steps.append(("evil", _Evil()))
        skops.io.dump(model, target)
    else:
        target.write_bytes(target.read_bytes()[:200] + b"\x00garbage")
    version = client.create_model_version(MODEL, source=copy.as_uri(), run_id=v1.run_id)
    return str(version.version)


@pytest.mark.parametrize(
    ("how", "words"),
    [("untrusted-type", "types outside the skops allow-list: tests.reliability.test_security._Evil"),
     ("corrupt-bytes", "is not a readable skops file")],
)
def test_tampered_artifact_is_refused_and_serving_keeps_the_champion(deployed, tmp_path, how, words):
    from starlette.testclient import TestClient

    home, uri, config, _ = deployed
    # A private copy of the database: the alias move below must not leak into the other tests.
    shutil.copy(home / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = _tampered_copy(client, home, tmp_path, how)
    with pytest.raises(RegistryError) as refused:
        Registry(uri).load_model(MODEL, version)
    assert words in str(refused.value) and "\n" not in str(refused.value)

    serving_config = config.model_copy(update={"serving": config.serving.model_copy(
        update={"prediction_log_uri": str(tmp_path / "predictions")})})
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"))
    with TestClient(create_app(serving_config, uri, settings=settings), base_url="http://127.0.0.1") as app:
        wait_for(lambda: app.get("/ready").status_code == 200, timeout=60)
        client.set_registered_model_alias(MODEL, "champion", version)
        wait_for(lambda: app.get("/ready").json()["last_error"] is not None, timeout=60)
        status = app.get("/ready").json()
        assert status["models"]["champion"]["version"] == "1"
        assert words in status["last_error"]
        time.sleep(0.5)  # a few more refreshes: the refused version stays refused
        answer = app.post("/predict", json={"records": [ROW]})
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
