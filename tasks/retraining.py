"""Steps of the retrain flow: is a retrain allowed now, and what data does it learn from."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops import data, retraining
from mlops.config import PipelineConfig, Settings
from mlops.registry import Registry
from mlops.results import RetrainResult
from tasks import io_task_options


@task(name="check-cooldown", **io_task_options())
def check_cooldown(registry: Registry, name: str, minutes: float) -> retraining.Cooldown:
    """The cooldown left after the model's last finished retrain, read from its audit trail."""
    return retraining.cooldown_state(registry.read_audit(name), minutes)


@task(name="assemble-training-data", cache_policy=NO_CACHE)
def assemble_training_data(config: PipelineConfig, include_recent_labels: bool) -> retraining.TrainingData:
    """The configured dataset, plus labelled predictions of the last `retrain.labelled_window_days`
    when there are enough; rows that break the contract are left out and counted."""
    base = data.read_frame(config.dataset.uri)
    if not include_recent_labels:
        return retraining.TrainingData(config.dataset.uri, len(base), 0)
    from mlops.serving.prediction_log import read_labelled_predictions

    skipped: list[str] = []
    labelled = read_labelled_predictions(
        config.serving.prediction_log_uri, since=retraining.labelled_since(config), skipped=skipped
    )
    combined = retraining.combine_with_labelled(base, labelled, config)
    left_out = {"dropped_rows": combined.dropped, "drop_reasons": combined.drop_reasons,
                "unreadable_parts": tuple(skipped)}
    if combined.dropped or skipped:
        get_run_logger().warning(
            f"labelled traffic left out: {combined.dropped} row(s) breaking the contract {combined.drop_reasons}; "
            f"{len(skipped)} unreadable log part(s) {skipped}"
        )
    if combined.added < config.retrain.min_labelled_rows:
        return retraining.TrainingData(config.dataset.uri, len(base), 0, **left_out)
    uri = data.write_frame(combined.frame, retraining.snapshot_uri(Settings().home, config.model.name))
    return retraining.TrainingData(uri, len(combined.frame), combined.added, **left_out)


@task(name="publish-retrain-summary", cache_policy=NO_CACHE)
def publish_retrain_summary(result: RetrainResult) -> None:
    """The retrain outcome as a Prefect markdown artifact."""
    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]+", "-", f"retrain-{result.model_name}".lower()),
        markdown=result.to_markdown(),
        description=f"{result.status}: {result.reason}"[:500],
    )
