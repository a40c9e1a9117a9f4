"""The `retrain` flow: what the drift automation starts, with nobody watching."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.deploy import deploy
from flows.train import train
from mlops.config import PipelineConfig
from mlops.summary import DeployResult, TrainResult
from tasks.retraining import assemble_training_data


@flow(name="retrain", log_prints=True)
def retrain(
    config: PipelineConfig,
    trigger: dict[str, Any] | None = None,
    include_recent_labels: bool = True,
) -> dict[str, Any]:
    """Train on the configured data plus recent labelled traffic, then run `deploy`.

    The retrained model replaces the champion only through deploy's gate and audit trail; the
    triggering event's payload (`trigger`) is recorded there. A refused challenger is a result
    of this run (status `refused`), not a failure.
    """
    logger = get_run_logger()
    data_uri = assemble_training_data(config, include_recent_labels)
    trained: TrainResult = train(config=config, data_uri=data_uri)
    deployed: DeployResult = deploy(config=config, challenger_version=trained.model_version, trigger=trigger)
    logger.info(f"retrained {trained.model_name} v{trained.model_version}: deploy {deployed.status} ({deployed.reason})")
    return {
        "status": deployed.status,
        "model_name": trained.model_name,
        "model_version": trained.model_version,
        "champion_version": deployed.champion_version,
        "reason": deployed.reason,
        "data_uri": data_uri,
        "trigger": trigger,
    }
