"""Thin Prefect tasks: each unpacks its inputs and calls one function of the `mlops` library."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from mlops.errors import MlopsError


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O failures, never domain errors: a missing file or a broken contract stays broken.

    Domain errors that say "not now" (`transient`, such as an unreachable S3 endpoint) are retried.
    """
    error = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return not isinstance(error, MlopsError) or error.transient


def io_task_options(*delays: float) -> dict[str, Any]:
    """Decorator options of a task that reads or writes remote storage: transient failures retried.

    One retry per delay (seconds), 2 s then 10 s unless given: enough for a server restart, short
    enough that a real outage fails the run within a minute.
    """
    delays = delays or (2, 10)
    return {
        "retries": len(delays),
        "retry_delay_seconds": list(delays),
        "retry_condition_fn": retry_if_transient,
        "cache_policy": NO_CACHE,
    }
