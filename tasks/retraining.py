"""Steps of the retrain flow: is a retrain allowed now, and what data does it learn from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops import data, datasets, retraining
from mlops.config import PipelineConfig
from mlops.registry import Registry
from mlops.results import RetrainResult, artifact_key
from tasks import io_task_options


@task(name="check-retrain-needed", **io_task_options())
def check_retrain_needed(registry: Registry, name: str, minutes: float, trigger: dict[str, Any] | None) -> str | None:
    """Why this retrain must train nothing (the cooldown, or its event already answered by a later
    retrain), read from the model's audit trail; None when it may train."""
    return retraining.skip_reason(registry.read_audit(name), minutes, trigger)


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_training_data(config: PipelineConfig, include_recent_labels: bool, home: Path) -> retraining.TrainingData:
    """The configured training data (a store-fed model's joined frame), plus labelled predictions
    of the last `retrain.labelled_window_days` when there are enough (kept as a snapshot under
    `home`); rows that break the contract are left out and counted."""
    base = datasets.read_training_frame(config.dataset, home).frame
    labelled = None
    skipped: list[str] = []
    if include_recent_labels:
        from mlops.serving.prediction_log import model_log_uri, read_labelled_predictions

        labelled = read_labelled_predictions(
            model_log_uri(config.serving.prediction_log_uri, config.model.name),
            since=retraining.labelled_since(config), skipped=skipped,
        )
    training_data, snapshot = retraining.plan_training_data(config, base, labelled, skipped, home)
    note = training_data.left_out_note()
    if note:
        get_run_logger().warning(note)
    if snapshot is not None:
        data.write_frame(snapshot, training_data.uri)
    return training_data


@task(name="publish-retrain-summary", cache_policy=NO_CACHE)
def publish_retrain_summary(result: RetrainResult) -> None:
    """The retrain outcome as a Prefect markdown artifact."""
    create_markdown_artifact(
        key=artifact_key("retrain", result.model_name),
        markdown=result.to_markdown(),
        description=f"{result.status}: {result.reason}"[:500],
    )
