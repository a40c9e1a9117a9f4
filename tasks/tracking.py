"""MLflow tracking and registration steps of the training flow."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.pipeline import Pipeline

from mlops import drift, evaluation, monitoring, search, training, validation
from mlops.config import CardConfig, PipelineConfig
from mlops.contract import DataContract
from mlops.registry import ModelRef, Registry
from mlops.results import TrainResult, artifact_key
from tasks import io_task_options

# MLflow I/O goes over the network when the store is a server: retry transient failures.
_IO = io_task_options(1, 5, 15)


@task(name="open-tracking-run", **_IO)
def open_tracking_run(registry: Registry, config: PipelineConfig, tags: dict[str, str]) -> str:
    """Start the MLflow run that collects everything this training does."""
    run_id = registry.start_run(config.experiment_name, f"train-{config.model.name}", tags)
    registry.log_params(
        run_id,
        {
            "estimator": config.model.estimator,
            **{f"model.{k}": v for k, v in config.model.params.items()},
            "seed": config.model.seed,
            "split.method": config.split.method,
            "split.test_size": config.split.test_size,
            "task": config.model.task,
        },
    )
    registry.log_json(run_id, config.model_dump(mode="json"), "config/pipeline.json")
    return run_id


@task(name="log-validation", **_IO)
def log_validation(registry: Registry, run_id: str, report: validation.ValidationReport) -> None:
    """Keep the validation result with the run, passed or failed."""
    registry.log_json(run_id, report.to_dict(), "validation/report.json")
    registry.log_text(run_id, report.to_markdown(), "validation/report.md")
    registry.set_run_tags(run_id, {"validation": report.short_summary()})


@task(name="log-evaluation", **_IO)
def log_evaluation(
    registry: Registry, run_id: str, result: evaluation.Evaluation, rows: dict[str, int],
    slices: evaluation.SliceReport | None = None,
) -> None:
    """Metrics, plots, feature importance and slice metrics of the holdout evaluation."""
    registry.log_metrics(run_id, result.metrics)
    registry.log_params(run_id, {f"rows.{k}": v for k, v in rows.items()})
    registry.log_files(run_id, result.plots, "plots")
    registry.log_json(run_id, result.feature_importance, "evaluation/feature_importance.json")
    if slices is not None and slices.segments:
        registry.log_json(run_id, slices.to_dict(), "evaluation/slices.json")


@task(name="log-behaviour", **_IO)
def log_behaviour(registry: Registry, run_id: str, report: evaluation.BehaviourReport) -> None:
    """The behavioural tests' results, passed or failed, as `behaviour/report.json` (the model card reads it)."""
    registry.log_json(run_id, report.to_dict(), evaluation.behaviour.REPORT_ARTIFACT)
    registry.set_run_tags(run_id, {"behaviour": "passed" if report.passed else "failed"})


@task(name="log-search", **_IO)
def log_search(registry: Registry, run_id: str, result: search.SearchResult) -> None:
    """Every candidate's cross-validated score with the run; the winner's parameters as `search.best.*`."""
    registry.log_params(run_id, result.tracking_params())
    registry.log_metrics(run_id, {"search_best_cv_score": result.best.mean_score})
    registry.log_json(run_id, result.to_dict(), "search/candidates.json")


@task(name="log-reference-data", **_IO)
def log_reference_data(
    registry: Registry, run_id: str, frame: pd.DataFrame, config: PipelineConfig, model: Any, contract: DataContract
) -> None:
    """Keep a seeded sample of the training data with the run, and its drift profile (computed once)."""
    sample = drift.reference_sample(frame, config.monitoring.reference_rows, config.model.seed)
    registry.log_reference(run_id, sample, monitoring.reference_profile(sample, model, contract).to_bytes())


@task(name="register-model", **_IO)
def register_model(
    registry: Registry,
    run_id: str,
    config: PipelineConfig,
    pipeline: Pipeline,
    contract: DataContract,
    example: pd.DataFrame,
    tags: dict[str, Any],
) -> ModelRef:
    """Log the model with skops and register it as the new `challenger`."""
    return registry.register_model(
        run_id,
        config.model.name,
        pipeline,
        contract,
        input_example=training.feature_frame(example, contract),
        trusted_types=training.skops_trusted_types(pipeline),
        tags=tags,
        # MLflow's registered-models page shows it; the default "not stated" would say nothing.
        description=config.card.purpose if config.card.purpose != CardConfig().purpose else None,
    )


@task(name="read-aliases", **_IO)
def read_aliases(registry: Registry, ref: ModelRef) -> list[str]:
    """The aliases the version holds now: a concurrent train may have taken `challenger` since."""
    return list(registry.aliases_of(ref.name, ref.version))


@task(name="close-tracking-run", **_IO)
def close_tracking_run(registry: Registry, run_id: str, succeeded: bool) -> None:
    registry.end_run(run_id, succeeded)


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(result: TrainResult) -> None:
    """The run summary as a Prefect markdown artifact."""
    create_markdown_artifact(
        key=artifact_key("train", result.model_name), markdown=result.to_markdown(),
        description=f"{result.status}: {result.model_name} v{result.model_version}",
    )
