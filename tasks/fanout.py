"""Independent task calls fanned out on the configured engine: in the flow, or on Dask.

The runner is entered here rather than given to a subflow: a subflow would record its inputs (the
training frame) as flow-run parameters in the Prefect database. Submitted from inside the running
flow, each call is an ordinary task run of that flow, wherever Dask executes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import Task
from prefect.task_runners import TaskRunner

from mlops.config import ExecutionConfig, Settings

# A worker's estimator gets one thread: parallelism comes from the workers, and BLAS/OpenMP
# pools sized for the whole machine in every worker would oversubscribe the cores.
_SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

# Dask's worker diagnostics sample the stack of every running task 100 times a second (for the
# dashboard's profile page) and poll memory 10 times a second. On a CPU-bound search that is CPU
# taken from the fits: ~5% of each worker's CPU time here, and with every core busy the fits
# wait for it. The local cluster runs without the profiler and polls less often; a cluster
# reached by address keeps what its operators configured. (Nannies pass this to their workers.)
LEAN_LOCAL_WORKERS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def dask_task_runner(execution: ExecutionConfig, settings: Settings | None = None) -> TaskRunner:
    """A DaskTaskRunner on `execution.dask_address` (else MLOPS_DASK_ADDRESS), else a local cluster."""
    from prefect_dask import DaskTaskRunner

    address = execution.dask_address or (settings or Settings()).dask_address
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(execution))


def local_cluster_kwargs(execution: ExecutionConfig) -> dict[str, Any]:
    """`distributed.LocalCluster` arguments of the cluster a run starts when it has no address.

    Start it inside `dask.config.set(LEAN_LOCAL_WORKERS)` to get the same workers.
    """
    return {
        "n_workers": execution.n_workers,
        "threads_per_worker": execution.threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",
        # A free port: the default 8787 collides between concurrent runs on one machine.
        "dashboard_address": "127.0.0.1:0",
        "env": _SINGLE_THREADED,
    }


def fan_out(task: Task, calls: Sequence[Mapping[str, Any]], execution: ExecutionConfig) -> list[Any]:
    """Run `task` once per parameter mapping; results in the order of `calls`, the first failure raised."""
    if execution.task_runner == "sequential":
        return [task(**call) for call in calls]
    import dask
    import distributed  # noqa: F401  (its defaults must be in dask.config before set(), or leaving set() drops them)

    with dask.config.set(LEAN_LOCAL_WORKERS), dask_task_runner(execution) as runner:
        calls = _send_shared_arguments_once(runner.client, calls)
        futures = [runner.submit(task, parameters=dict(call)) for call in calls]
        return [future.result() for future in futures]


# Below this (Dask's own cut-off for lifting a large argument out of `Client.map`), an argument
# travels inline. Each scattered one also becomes a dependency of every call, and calls with
# more than a few dependencies lose the scheduler's queueing of independent tasks.
_SCATTER_BYTES = 100_000


def _send_shared_arguments_once(client: Any, calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Replace each large argument that every call shares (the same object) with one copy per worker.

    Passed inline, the training frame of a search would be pickled by this process and
    deserialized by a worker for every call: at 60k rows, 6.5 MB and ~0.1 s of CPU each way, on
    the cores the fits need, and the scheduler would hold one copy per pending call. Scattered
    once to every worker, each worker deserializes it once and its tasks share that copy. Dask
    substitutes the data for the future before the task runs, so task code and Prefect's
    records see the value itself.
    """
    from dask.sizeof import sizeof

    calls = [dict(call) for call in calls]
    if len(calls) < 2:
        return calls
    first = calls[0]
    shared = {
        name: value for name, value in first.items()
        if all(name in call and call[name] is value for call in calls[1:]) and sizeof(value) >= _SCATTER_BYTES
    }
    if not shared:
        return calls
    # One round trip for all of them; broadcast, so no worker waits on another for its copy.
    futures = client.scatter(shared, broadcast=True, hash=False)
    return [{**call, **futures} for call in calls]
