"""Hyperparameter search on Dask workers against the same search run sequentially.

Baseline: the same 16-candidate grid, same data and same folds, scored one candidate after the
other inside the flow (`execution.task_runner: sequential`). Two contenders fan the candidates
out through Prefect's DaskTaskRunner on 2 single-threaded worker processes:
- a new local cluster, started and stopped inside the timed search (a run with no Dask address);
- a running cluster reached by address (`execution.dask_address` / MLOPS_DASK_ADDRESS, as a team's
  scheduler is), started and its workers warmed before timing.
Every estimator runs on one thread everywhere (mlops.search limits it), so the comparison is cores
against cores. All runs are task runs of a flow on a Prefect server started before timing; the
scores must come out identical.

    .venv/bin/python benchmarks/search_dask.py [--rows 60000] [--max-iter 300] [--workers 2] [--repeats 1]

Prints the times and the speedups sequential / dask (target on 2 cores: at least 1.7x), and the
hardware ceiling: the same candidates on plain warm worker processes (no Dask, no Prefect), which
shows how much of the speedup the cores themselves allow.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from mlops import contract as contracts  # noqa: E402
from mlops.config import PipelineConfig, parse_config  # noqa: E402
from mlops.local import stack  # noqa: E402
from mlops.local.simulate import simulate_churn  # noqa: E402
from mlops.search import SearchResult  # noqa: E402
from tasks.fanout import LEAN_LOCAL_WORKERS, fan_out, local_cluster_kwargs  # noqa: E402
from tasks.search import search_hyperparameters  # noqa: E402

GRID = {
    "learning_rate": [0.05, 0.1],
    "max_leaf_nodes": [15, 63],
    "min_samples_leaf": [20, 80],
    "l2_regularization": [0.0, 1.0],
}


def config(task_runner: str, max_iter: int, workers: int) -> PipelineConfig:
    return parse_config({
        "dataset": {"uri": "benchmark.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {
            "name": "bench-search",
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            # No early stopping: every candidate does its full work, so the timing is about cores.
            "params": {"max_iter": max_iter, "early_stopping": False},
            "search": {"param_grid": GRID, "cv": 3},
        },
        "execution": {"task_runner": task_runner, "n_workers": workers, "threads_per_worker": 1},
    })


@flow(name="benchmark-search")
def timed_search(rows: int, cfg: PipelineConfig) -> tuple[SearchResult, float]:
    frame = simulate_churn(rows, seed=3)
    contract = contracts.infer_contract(frame, "churned", "event_time", "classification")
    start = time.perf_counter()
    result = search_hyperparameters(frame, contract, cfg)
    return result, time.perf_counter() - start


@task(name="warm-up")
def warm_up(index: int) -> int:
    """Import what a candidate imports, as the workers of a cluster that has run a search have."""
    import mlops.search  # noqa: F401

    return index


@flow(name="benchmark-warm-workers")
def warm_workers(cfg: PipelineConfig) -> None:
    fan_out(warm_up, [{"index": i} for i in range(2 * cfg.execution.n_workers)], cfg.execution)


def timed_search_on_running_cluster(rows: int, cfg: PipelineConfig) -> tuple[SearchResult, float]:
    """The same search on a cluster that was running before it, reached by its address."""
    import dask
    import distributed

    with dask.config.set(LEAN_LOCAL_WORKERS), distributed.LocalCluster(**local_cluster_kwargs(cfg.execution)) as cluster:
        execution = cfg.execution.model_copy(update={"dask_address": cluster.scheduler_address})
        by_address = cfg.model_copy(update={"execution": execution})
        warm_workers(by_address)
        return timed_search(rows, by_address)


_POOL_DATA: tuple = ()


def _pool_init(rows: int, cfg: PipelineConfig) -> None:
    """Each plain worker process builds the same frame itself: no transfer cost on this side."""
    global _POOL_DATA
    frame = simulate_churn(rows, seed=3)
    _POOL_DATA = (frame, contracts.infer_contract(frame, "churned", "event_time", "classification"), cfg)


def _pool_score(index: int, params: dict) -> tuple[float, ...]:
    import mlops.search

    frame, contract, cfg = _POOL_DATA
    return mlops.search.score_candidate(frame, contract, cfg.model, cfg.model.search, params, index).fold_scores


def timed_ceiling(rows: int, cfg: PipelineConfig, workers: int) -> float:
    """What the cores give without Dask or Prefect: the same candidates on plain worker processes.

    Started and warmed before timing, so this is the hardware's own limit for the workload (two
    vCPUs of a virtual machine need not give twice the work of one).
    """
    from mlops.search import candidates

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init, initargs=(rows, cfg)) as pool:
        list(pool.map(abs, range(workers * 4)))  # every worker started and its frame built
        start = time.perf_counter()
        list(pool.map(_pool_score, *zip(*enumerate(candidates(cfg.model.search)), strict=True)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternating pairs; medians are reported")
    args = parser.parse_args()
    seq_cfg, dask_cfg = (config(runner, args.max_iter, args.workers) for runner in ("sequential", "dask"))
    load_before = os.getloadavg()[0]

    t_seq, t_new, t_running, t_ceiling, same = [], [], [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        service = stack.prefect_service(Path(tmp), "127.0.0.1", stack.free_port())
        proc = stack.start(service, Path(tmp), timeout=180)
        try:
            # Prefect has read its settings at import: the server is set the way the test fixtures do.
            with temporary_settings(updates={PREFECT_API_URL: f"{service.url}/api"}):
                for _ in range(args.repeats):
                    # Alternating runs: a load change on the shared machine hits every side alike.
                    sequential, elapsed = timed_search(args.rows, seq_cfg)
                    t_seq.append(elapsed)
                    new_cluster, elapsed = timed_search(args.rows, dask_cfg)
                    t_new.append(elapsed)
                    running_cluster, elapsed = timed_search_on_running_cluster(args.rows, dask_cfg)
                    t_running.append(elapsed)
                    t_ceiling.append(timed_ceiling(args.rows, dask_cfg, args.workers))
                    expected = [c.fold_scores for c in sequential.candidates]
                    same &= expected == [c.fold_scores for c in new_cluster.candidates]
                    same &= expected == [c.fold_scores for c in running_cluster.candidates]
        finally:
            if proc is not None:
                stack.stop_pid(proc.pid)

    seq, new, running, ceiling = (statistics.median(t) for t in (t_seq, t_new, t_running, t_ceiling))
    n = len(sequential.candidates)
    w = args.workers
    print(f"candidates: {n} (cv=3, {args.rows} rows, HistGradientBoosting max_iter={args.max_iter}, one thread each)")
    print(f"machine load (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"sequential:              {seq:7.1f} s  ({seq / n:.2f} s per candidate)  runs: {_seconds(t_seq)}")
    print(f"dask, new cluster:       {new:7.1f} s  ({w} workers started and stopped in the run)  runs: {_seconds(t_new)}")
    print(f"dask, running cluster:   {running:7.1f} s  ({w} warm workers, by address)  runs: {_seconds(t_running)}")
    print(f"speedup, new cluster:    {seq / new:7.2f}x  (target on 2 cores: at least 1.7x)  per pair: {_ratios(t_seq, t_new)}")
    print(f"speedup, running cluster:{seq / running:7.2f}x  (target on 2 cores: at least 1.7x)  per pair: {_ratios(t_seq, t_running)}")
    print(f"cluster start-up:        {new - running:7.1f} s  (new minus running: start, worker imports, stop)")
    print(f"plain processes:         {ceiling:7.1f} s  ({w} warm processes, no Dask or Prefect)  runs: {_seconds(t_ceiling)}")
    print(f"hardware ceiling:        {seq / ceiling:7.2f}x  (sequential / plain processes: what these cores give this workload)")
    print(f"running cluster of ceiling: {ceiling / running:4.0%}  (plain-process time / running-cluster time)")
    print(f"identical scores:        {same}; best {sequential.best.params}")
    if not same:
        raise SystemExit("a Dask run's scores differ from the sequential run's")


def _ratios(baseline: list[float], contender: list[float]) -> str:
    return ", ".join(f"{a / b:.2f}x" for a, b in zip(baseline, contender, strict=True))


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
