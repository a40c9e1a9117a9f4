"""Assemble the data a retraining learns from."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from mlops import data, retraining
from mlops.config import PipelineConfig, Settings


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_training_data(config: PipelineConfig, include_recent_labels: bool) -> str:
    """The configured dataset, plus labelled predictions from the log when there are any."""
    if not include_recent_labels:
        return config.dataset.uri
    base = data.read_frame(config.dataset.uri)
    from mlops.serving.prediction_log import read_labelled_predictions

    labelled = read_labelled_predictions(config.serving.prediction_log_uri)
    combined = retraining.combine_with_labelled(base, labelled, config)
    if combined is base:
        return config.dataset.uri
    return data.write_frame(combined, retraining.snapshot_uri(Settings().home, config.model.name))
