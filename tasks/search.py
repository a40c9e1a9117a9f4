"""Hyperparameter search inside the train flow: every candidate a task run, on the configured engine."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import search
from mlops.config import ModelConfig, PipelineConfig, SearchConfig
from mlops.contract import DataContract
from tasks.fanout import fan_out


# No timeout_seconds: on Dask the task runs in a worker thread, which Prefect's timeout cannot stop.
@task(name="score-candidate", task_run_name="score-candidate-{index}", cache_policy=NO_CACHE)
def score_candidate(
    frame: pd.DataFrame, contract: DataContract, model: ModelConfig, search_config: SearchConfig,
    params: dict[str, Any], index: int,
) -> search.CandidateScore:
    """Cross-validate one grid point on the training split."""
    return search.score_candidate(frame, contract, model, search_config, params, index)


def search_hyperparameters(frame: pd.DataFrame, contract: DataContract, config: PipelineConfig) -> search.SearchResult:
    """Cross-validate every grid point of `model.search` on `frame`; sequential or on Dask per `execution`."""
    spec = config.model.search
    if spec is None:
        raise ValueError("the config has no model.search section")
    calls = [
        {"frame": frame, "contract": contract, "model": config.model, "search_config": spec, "params": params, "index": i}
        for i, params in enumerate(search.candidates(spec))
    ]
    return search.collect(fan_out(score_candidate, calls, config.execution), spec, config.model.task)
