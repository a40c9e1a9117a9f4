"""Hyperparameter search on a Dask LocalCluster gives exactly the sequential run's results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from mlops import contract as contracts
from mlops.config import ExecutionConfig, PipelineConfig, parse_config
from mlops.local.simulate import simulate_churn
from mlops.search import SearchResult
from tasks.fanout import fan_out
from tasks.search import search_hyperparameters

pytestmark = pytest.mark.usefixtures("prefect_api")
REPO = Path(__file__).resolve().parents[2]


def _config(task_runner: str) -> PipelineConfig:
    return parse_config({
        "dataset": {"uri": "unused.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {
            "name": "search-test",
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 20},
            "search": {"param_grid": {"learning_rate": [0.05, 0.2], "max_leaf_nodes": [7, 31]}, "cv": 3},
        },
        "execution": {"task_runner": task_runner, "n_workers": 2, "threads_per_worker": 1},
    })


@flow(name="search-only")
def _search(config: PipelineConfig) -> SearchResult:
    frame = simulate_churn(1500, seed=5)
    contract = contracts.infer_contract(frame, "churned", "event_time", "classification")
    return search_hyperparameters(frame, contract, config)


def test_dask_search_equals_sequential_search():
    sequential = _search(_config("sequential"))
    distributed = _search(_config("dask"))

    assert len(sequential.candidates) == 4
    assert [c.params for c in distributed.candidates] == [c.params for c in sequential.candidates]
    # Same folds, same seeds, one thread each: the scores are identical, not merely close.
    assert [c.fold_scores for c in distributed.candidates] == [c.fold_scores for c in sequential.candidates]
    assert distributed.best.params == sequential.best.params
    # The grid actually discriminates: otherwise "same best" would hold by accident.
    assert len({c.mean_score for c in sequential.candidates}) > 1


@task(cache_policy=NO_CACHE)
def _keep_frame(frame, index: int) -> tuple[int, int, int]:
    # Kept on the Dask worker itself (this function travels by value, its module globals with
    # it), and kept alive, so that no two copies can share an id().
    from distributed import get_worker

    received = get_worker().__dict__.setdefault("test_received_frames", [])
    received.append(frame)
    return os.getpid(), len({id(f) for f in received}), int(frame["tenure_months"].sum()) + index


@flow(name="fan-out-shared-frame")
def _fan_out_shared_frame(calls: int) -> tuple[list, int]:
    frame = simulate_churn(2000, seed=7)
    execution = ExecutionConfig(task_runner="dask", n_workers=2, threads_per_worker=1)
    return fan_out(_keep_frame, [{"frame": frame, "index": i} for i in range(calls)], execution), int(frame["tenure_months"].sum())


def test_an_argument_every_call_shares_reaches_each_worker_once():
    # Sent inline, every call would unpickle its own copy of the frame; scattered once, a
    # worker's tasks all hold the same object.
    results, total = _fan_out_shared_frame(8)

    assert [value for _, _, value in results] == [total + i for i in range(8)]
    copies_per_worker: dict[int, int] = {}
    calls_per_worker: dict[int, int] = {}
    for pid, copies, _ in results:
        copies_per_worker[pid] = max(copies, copies_per_worker.get(pid, 0))
        calls_per_worker[pid] = calls_per_worker.get(pid, 0) + 1
    assert max(calls_per_worker.values()) > 1  # else one copy per call would look the same
    assert set(copies_per_worker.values()) == {1}


TWO_FAN_OUTS = """
from prefect import flow, task
from tasks.fanout import fan_out
from mlops.config import ExecutionConfig

@task
def double(x: int) -> int:
    return 2 * x

@flow
def twice() -> list[int]:
    execution = ExecutionConfig(task_runner="dask", n_workers=1)
    return fan_out(double, [{"x": 1}], execution) + fan_out(double, [{"x": 2}], execution)

if __name__ == "__main__":
    print(twice())
"""


def test_a_fresh_process_can_fan_out_on_dask_twice(prefect_api, tmp_path):
    # fan_out scopes its lean-worker settings in dask.config; leaving that scope once dropped
    # distributed's defaults when distributed was first imported inside it (the next fan-out in the
    # process failed with KeyError 'comm'). Only a fresh interpreter has distributed unimported.
    script = tmp_path / "two_fan_outs.py"
    script.write_text(TWO_FAN_OUTS)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[2, 4]"


def test_train_fits_the_search_winner_and_logs_every_candidate(mlflow_store, tmp_path):
    from mlflow import MlflowClient

    from flows.train import train
    from mlops.data import write_frame
    from mlops.registry import Registry

    uri = write_frame(simulate_churn(1500, seed=6), str(tmp_path / "churn.parquet"))
    raw = _config("sequential").model_dump(mode="json")
    raw["dataset"]["uri"] = uri
    raw["validation"] = {"min_rows": 100}
    result = train(config=parse_config(raw))

    client = MlflowClient(tracking_uri=mlflow_store)
    run = client.get_run(result.run_id)
    logged = json.loads(Path(client.download_artifacts(result.run_id, "search/candidates.json", str(tmp_path))).read_text())
    assert len(logged["candidates"]) == 4
    best = logged["best_params"]
    assert run.data.params["search.best.learning_rate"] == str(best["learning_rate"])
    # The registered pipeline was fitted with the winner laid over the configured params.
    model = Registry(mlflow_store).load_model("search-test", result.model_version)
    fitted = model.named_steps["estimator"].get_params()
    assert fitted["learning_rate"] == best["learning_rate"] and fitted["max_leaf_nodes"] == best["max_leaf_nodes"]
    assert fitted["max_iter"] == 20
