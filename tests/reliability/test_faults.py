"""Faults: concurrent deploys, and a registry that goes away under the pipeline and the serving app."""

from __future__ import annotations

import contextvars
import shutil
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.deploy import deploy
from flows.train import train
from mlops import promotion
from mlops.registry import Registry
from tests.integration.test_serving import MODEL as SERVING_MODEL
from tests.reliability.flows_setup import flow_config, new_home

MODEL = "churn-race"
MODEL_SERVING = SERVING_MODEL


@pytest.fixture(scope="module")
def champion_store(prefect_api, mlflow_template, tmp_path_factory) -> tuple[Path, str]:
    """v1 trained and made champion; (home, data uri)."""
    home, uri, data_uri = new_home(tmp_path_factory, mlflow_template, "race-home", seed=9)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        assert train(config=flow_config(MODEL, data_uri), return_state=True).is_completed()
    Registry(uri).set_alias(MODEL, "champion", "1")
    return home, data_uri


def test_two_deploys_racing_for_champion_one_wins_and_both_are_audited(champion_store, tmp_path, monkeypatch):
    home, data_uri = champion_store
    shutil.copy(home / "mlflow.db", tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    v1 = client.get_model_version(MODEL, "1")
    # Two challengers equal to the champion (same artifact): each, alone, would be promoted.
    for _ in range(2):
        client.create_model_version(MODEL, source=v1.source, run_id=v1.run_id, tags=v1.tags)

    # Both deploys compare against v1 before either stages or moves anything: the race, made certain.
    both_decided = threading.Barrier(2, timeout=120)
    original = promotion.decide_promotion

    def decide_then_wait(*args, **kwargs):
        decision = original(*args, **kwargs)
        both_decided.wait()
        return decision

    monkeypatch.setattr(promotion, "decide_promotion", decide_then_wait)
    results: dict[str, object] = {}

    def run(version: str) -> None:
        state = deploy(config=flow_config(MODEL, data_uri), challenger_version=version, return_state=True)
        results[version] = state.result() if state.is_completed() else state.message

    # Each thread runs in a copy of this context: the session's Prefect API URL is a context
    # setting, and a bare thread would start a temporary server of its own instead.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(run, v)) for v in ("2", "3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    statuses = {v: getattr(r, "status", r) for v, r in results.items()}
    assert sorted(statuses.values()) == ["promoted", "refused"], statuses
    winner = next(v for v, s in statuses.items() if s == "promoted")
    loser = next(v for v, s in statuses.items() if s == "refused")
    assert "moved from v1 to v" + winner in results[loser].reason
    aliases = {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}
    assert aliases["champion"] == winner and aliases["previous-champion"] == "1"
    assert "staging" not in aliases
    records = [r for r in Registry(uri).read_audit(MODEL) if r.to_version in ("2", "3")]
    assert sorted((r.to_version, r.action) for r in records) == sorted(
        [(winner, "promoted"), (loser, "refused")]
    )
    assert next(r for r in records if r.action == "promoted").from_version == "1"


# -- the serving app loses its registry ----------------------------------------------------------


def test_serving_keeps_the_champion_while_the_registry_server_is_down(store, tmp_path):
    import httpx

    from mlops.local import stack
    from tests.integration.test_serving import HOST, rows, serve

    # The MLflow server serves a copy of the store that the serving fixtures registered.
    home = tmp_path / "mlflow-home"
    home.mkdir()
    shutil.copy(store.removeprefix("sqlite:///"), home / "mlflow.db")
    service = stack.mlflow_service(home, HOST, stack.free_port())
    proc = stack.start(service, home, timeout=180)
    sample = rows(3)
    try:
        with serve(service.url, tmp_path) as server:
            def ready() -> dict:
                return httpx.get(f"{server.url}/ready", timeout=10).json()

            def predict() -> httpx.Response:
                return httpx.post(f"{server.url}/predict", json={"records": sample}, timeout=10)

            assert predict().json()["model_version"] == "1" and ready()["ready_for_swap"] is True
            stack.stop_pid(proc.pid)
            proc = None
            _wait(lambda: ready()["registry_reachable"] is False)
            status = httpx.get(f"{server.url}/ready", timeout=10)
            # Still ready to answer (a champion is loaded), but not able to pick up a new one.
            assert status.status_code == 200 and status.json()["ready_for_swap"] is False
            assert status.json()["last_error"]
            answers = [predict() for _ in range(20)]
            assert {(a.status_code, a.json()["model_version"]) for a in answers} == {(200, "1")}

            proc = stack.start(service, home, timeout=180)
            _wait(lambda: ready()["ready_for_swap"] is True)
            # Back: an alias move is picked up again.
            # registry_uri too: without it MLflow 3 takes the registry from whatever tracking URI an
            # earlier test left in the environment or the fluent globals.
            MlflowClient(tracking_uri=service.url, registry_uri=service.url).set_registered_model_alias(
                MODEL_SERVING, "champion", "2"
            )
            _wait(lambda: predict().json()["model_version"] == "2")
            assert server.stop() == 0, server.tail()
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)


def _wait(check, timeout: float = 90.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.25)


# -- the MLflow server goes away during `mlops train` ----------------------------------------------


def test_train_fails_cleanly_when_mlflow_dies_mid_run_and_a_rerun_succeeds(workdir, prefect_server):
    import json
    import time

    from mlops.local import stack
    from tests.integration.test_cli import MODEL as CLI_MODEL
    from tests.integration.test_cli import base_config, run_cli, versions, write_config

    # The server serves the CLI workdir's own store, so the store can be read while it is down.
    service = stack.mlflow_service(workdir, "127.0.0.1", stack.free_port())
    proc = stack.start(service, workdir, timeout=180)
    cfg = write_config(workdir, base_config("churn.parquet"))
    # MLflow's own HTTP retries would stretch a dead server into minutes; the tasks' retries remain.
    fast = {"MLFLOW_TRACKING_URI": service.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    outcome: dict[str, object] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(proc=run_cli(["train", "--config", cfg, "--json"], workdir, prefect_server, **fast))
    )
    try:
        runner.start()
        store = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
        deadline = time.monotonic() + 180
        # Kill the server as soon as the run exists: mid-run, before anything is registered.
        while not (store.get_experiment_by_name(CLI_MODEL) and store.search_runs(
                [store.get_experiment_by_name(CLI_MODEL).experiment_id])):
            assert time.monotonic() < deadline and runner.is_alive(), outcome
            time.sleep(0.1)
        stack.stop_pid(proc.pid)
        proc = None
        runner.join(timeout=600)
        failed = outcome["proc"]
        assert failed.returncode == 1, failed.stderr[-3000:]
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Connection" in errors[0], failed.stderr[-3000:]
        assert json.loads(failed.stdout.strip().splitlines()[-1])["exit_code"] == 1
        assert versions(workdir) == []
        # The tasks retried before giving up (their retry delays are 1, 5 and 15 s).
        assert "Retry" in failed.stderr or "retry" in failed.stderr

        proc = stack.start(service, workdir, timeout=180)
        rerun = run_cli(["train", "--config", cfg, "--json"], workdir, prefect_server, **fast)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert json.loads(rerun.stdout)["model_version"] == "1"
        assert versions(workdir) == ["1"]
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)
