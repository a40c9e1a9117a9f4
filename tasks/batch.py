"""Steps of the batch-scoring flow: load the scoring version, score one chunk, write the result."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import batch, data
from mlops.contract import DataContract
from mlops.registry import ALIAS_CHAMPION, ModelRef, Registry
from tasks import io_task_options

_IO = io_task_options()


@task(name="load-scoring-model", **_IO)
def load_scoring_model(registry: Registry, name: str, version: str | None) -> tuple[ModelRef, Any, DataContract]:
    """The version to score with (`version`, else the champion), its pipeline and its contract."""
    ref = registry.get_version(name, version) if version else registry.require_alias(name, ALIAS_CHAMPION)
    return ref, registry.load_model(name, ref.version), registry.load_contract(ref)


@task(name="score-chunk", task_run_name="score-chunk-{index}", cache_policy=NO_CACHE)
def score_chunk(model: Any, chunk: pd.DataFrame, contract: DataContract, index: int) -> pd.DataFrame:
    """Predictions for one chunk; `index` only names the task run."""
    return batch.score_chunk(model, chunk, contract)


@task(name="write-predictions", **_IO)
def write_predictions(chunks: list[pd.DataFrame], uri: str) -> int:
    """Write the scored chunks as one file, all-or-nothing (local rename or a single S3 put)."""
    frame = batch.combine_chunks(chunks)
    data.write_frame(frame, uri)
    return len(frame)
