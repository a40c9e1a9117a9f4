"""Score one chunk of a batch-scoring job."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import batch
from mlops.contract import DataContract


@task(name="score-chunk", task_run_name="score-chunk-{index}", cache_policy=NO_CACHE)
def score_chunk(model: Any, chunk: pd.DataFrame, contract: DataContract, index: int) -> pd.DataFrame:
    """Predictions for one chunk; `index` only names the task run."""
    return batch.score_chunk(model, chunk, contract)
