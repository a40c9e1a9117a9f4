"""Hyperparameter search inside the train flow: every candidate a task run, on the configured engine."""

from __future__ import annotations

import pandas as pd

from flows.fanout import fan_out
from mlops import search
from mlops.config import PipelineConfig
from mlops.contract import DataContract
from tasks.search import score_candidate


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
