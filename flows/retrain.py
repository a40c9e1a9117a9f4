"""The `retrain` flow: what the drift automation starts, with nobody watching."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.deploy import deploy
from flows.states import completed_as_status
from flows.train import train
from mlops import retraining
from mlops.catalogue import ConfigOverrides
from mlops.config import PipelineConfig, Settings
from mlops.errors import QualityGateFailed
from mlops.registry import Registry, open_registry
from mlops.results import STATUS_REFUSED, STATUS_SKIPPED, DeployResult, RetrainResult, TrainResult
from mlops.text import printable
from tasks.catalogue import load_model_config, model_slot
from tasks.deploy import current_champion, emit_model_event, record_audit
from tasks.retraining import assemble_training_data, check_retrain_needed, publish_retrain_summary


def _refuse_unregistered(
    registry: Registry, name: str, err: QualityGateFailed, trigger: dict[str, Any] | None,
    training_data: retraining.TrainingData, run_id: str | None, started: datetime,
) -> RetrainResult:
    """Record a retrained model that missed a gate (never registered) as a refusal, and say so."""
    champion = current_champion(registry, name)
    champion_version = champion.version if champion else None
    gates = getattr(err, "gate_results", None) or ()
    record = retraining.gate_refusal(name, str(err), gates, champion_version, trigger, run_id, started)
    record_audit(registry, record)
    emit_model_event(record)
    result = RetrainResult(status=STATUS_REFUSED, model_name=name, reason=str(err), champion_version=champion_version,
                           data_uri=training_data.uri, trigger=trigger, flow_run_id=run_id, **training_data.report())
    publish_retrain_summary(result)
    return result


@flow(name="retrain", log_prints=True)
def retrain(
    config: PipelineConfig,
    trigger: dict[str, Any] | None = None,
    include_recent_labels: bool | None = None,
    cooldown_minutes: float | None = None,
    config_source: dict[str, str] | None = None,
) -> RetrainResult:
    """Train on the configured data plus recent labelled traffic, then run `deploy`.

    The retrained model replaces the champion only through deploy's gate and audit trail; the
    triggering event (`trigger`: event name, id and payload) is recorded there. A refused challenger
    is a result of this run (status `refused`), not a failure, and so is a retrained model that misses
    a quality gate (`refused`, recorded in the audit trail; nothing registered). With enough labelled
    traffic both models are judged on its newest rows (`retrain.recent_holdout_share`) and the
    challenger learns from the rest. Labelled traffic is read for the last
    `retrain.labelled_window_days` (at most `retrain.max_labelled_rows` rows, the newest); rows that
    break the data contract (a value beyond the contract's bound, a null or unknown label) are left
    out and counted in the result (`dropped_rows`, `drop_reasons`) instead of failing validation.
    The run is `skipped` and trains nothing while another retrain of the model runs, within
    `retrain.cooldown_minutes` (or `cooldown_minutes`) of the last finished retrain, and when its
    event occurred before a retrain of the model that has since started and decided (that retrain
    already answered it).

    Args:
        config: The pipeline config; `retrain` sets the cooldown and the use of labelled traffic.
        trigger: The event that asked for the retrain (name, id, time, payload), for the audit trail.
        include_recent_labels: Add labelled prediction-log rows (default `retrain.include_recent_labels`).
        cooldown_minutes: Skip if a retrain finished this recently (default `retrain.cooldown_minutes`).
        config_source: Which config file (and its sha256) the config came from, for the lineage tags.
    """
    logger = get_run_logger()
    name = config.model.name
    run_id = str(flow_run.get_id()) if flow_run.get_id() else None
    # One retrain per model at a time. The deployment has no concurrency limit of its own: shared
    # by every model, it would let a storm on one model cancel or queue another model's retrain.
    with model_slot("retrain", name) as acquired:
        if not acquired:
            reason = f"a retrain of {name} is already running"
            logger.info(f"retrain of {name} skipped: {reason}")
            result = RetrainResult(status=STATUS_SKIPPED, model_name=name, reason=reason, champion_version=None,
                                   trigger=trigger, flow_run_id=run_id)
            publish_retrain_summary(result)
            return completed_as_status(result)
        result = _retrain_holding_slot(config, trigger, include_recent_labels, cooldown_minutes, run_id, config_source)
        return completed_as_status(result)


def _retrain_holding_slot(
    config: PipelineConfig, trigger: dict[str, Any] | None, include_recent_labels: bool | None,
    cooldown_minutes: float | None, run_id: str | None, config_source: dict[str, str] | None,
) -> RetrainResult:
    logger = get_run_logger()
    name = config.model.name
    registry = open_registry()
    started = datetime.now(UTC)
    minutes = config.retrain.cooldown_minutes if cooldown_minutes is None else cooldown_minutes
    skip = check_retrain_needed(registry, name, minutes, trigger)
    if skip is not None:
        logger.info(f"retrain of {name} skipped: {skip}")
        result = RetrainResult(status=STATUS_SKIPPED, model_name=name, reason=skip,
                               champion_version=None, trigger=trigger, flow_run_id=run_id)
        publish_retrain_summary(result)
        return result

    labels = config.retrain.include_recent_labels if include_recent_labels is None else include_recent_labels
    training_data = assemble_training_data(config, labels, Settings().home)
    config = retraining.retrain_config(config, training_data)
    try:
        trained: TrainResult = train(config=config, config_source=config_source)
    except QualityGateFailed as err:
        # Not good enough is an answer, not a crash: recorded like a refusal, the run completes.
        logger.warning(f"retrained {name} refused: {err}")
        return _refuse_unregistered(registry, name, err, trigger, training_data, run_id, started)
    # deploy cuts its promotion holdout from the same data and split: the newest labelled traffic.
    deployed: DeployResult = deploy(
        config=config, challenger_version=trained.model_version, trigger=retraining.trigger_evidence(trigger, started)
    )
    logger.info(printable(f"retrained {name} v{trained.model_version}: deploy {deployed.status} ({deployed.reason})"))
    result = RetrainResult(
        status=deployed.status, model_name=name, reason=deployed.reason, model_version=trained.model_version,
        champion_version=deployed.champion_version, data_uri=training_data.uri, trigger=trigger, flow_run_id=run_id,
        **training_data.report(),
    )
    publish_retrain_summary(result)
    return result


@flow(name="retrain", log_prints=True)
def retrain_model(
    model: str,
    overrides: ConfigOverrides | None = None,
    trigger: dict[str, Any] | None = None,
    include_recent_labels: bool | None = None,
    cooldown_minutes: float | None = None,
) -> RetrainResult:
    """Retrain a catalogue model (the same run as `retrain`): what a drift event on
    `mlops.model.<name>` starts, with the model taken from the event.

    Args:
        model: The model: one of the catalogue's (configs/*.yaml) model names.
        overrides: Config keys to change for this run only; keys left empty keep the file's value.
        trigger: The event that asked for the retrain (name, id, time, payload), for the audit trail.
        include_recent_labels: Add labelled prediction-log rows (default `retrain.include_recent_labels`).
        cooldown_minutes: Skip if a retrain finished this recently (default `retrain.cooldown_minutes`).
    """
    resolved = load_model_config(model, overrides)
    return retrain.fn(config=resolved.config, trigger=trigger, include_recent_labels=include_recent_labels,
                      cooldown_minutes=cooldown_minutes, config_source=resolved.record())
