"""Score one hyperparameter-search candidate."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import search
from mlops.config import ModelConfig, SearchConfig
from mlops.contract import DataContract


# No timeout_seconds: on Dask the task runs in a worker thread, which Prefect's timeout cannot stop.
@task(name="score-candidate", task_run_name="score-candidate-{index}", cache_policy=NO_CACHE)
def score_candidate(
    frame: pd.DataFrame, contract: DataContract, model: ModelConfig, search_config: SearchConfig,
    params: dict[str, Any], index: int,
) -> search.CandidateScore:
    """Cross-validate one grid point on the training split."""
    return search.score_candidate(frame, contract, model, search_config, params, index)
