"""Split the data and fit the model pipeline."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops import evaluation, training
from mlops.config import PipelineConfig
from mlops.contract import DataContract


@task(name="split-dataset", cache_policy=NO_CACHE)
def split_dataset(
    frame: pd.DataFrame, contract: DataContract, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut the holdout: stratified random or time-based, as configured."""
    return evaluation.split_frame(frame, contract, config.split, config.model.seed)


@task(name="fit-model", timeout_seconds=3600, cache_policy=NO_CACHE)
def fit_model(frame: pd.DataFrame, contract: DataContract, config: PipelineConfig) -> Pipeline:
    """Fit preprocessing and the configured estimator on the training split."""
    return training.fit_pipeline(frame, contract, config.model)
