"""Steps of the deploy and rollback flows: registry lookups, scoring, staging, aliases, audit, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mlops import data, evaluation, events, promotion
from mlops.audit import AuditRecord
from mlops.config import PipelineConfig, RollbackConfig, Settings
from mlops.contract import DataContract
from mlops.errors import ModelNotFound
from mlops.promotion import smoke, watch
from mlops.registry import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_STAGING, ModelRef, Registry
from mlops.results import DeployResult, artifact_key
from tasks import io_task_options

# MLflow I/O goes over the network when the store is a server: retry transient failures.
_IO = io_task_options(1, 5, 15)
# Alias writes are not blindly retried: a retry after an unseen success could reorder them.
_ONCE: dict[str, Any] = {"retries": 0, "cache_policy": NO_CACHE}


@task(name="resolve-candidate", **_IO)
def resolve_candidate(registry: Registry, model_name: str, version: str | None) -> ModelRef:
    """The version to deploy: the one asked for, else the current `challenger`."""
    if version:
        found = {ref.version: ref for ref in registry.list_versions(model_name)}
        if str(version) not in found:
            raise ModelNotFound(f"model {model_name} has no version {version}")
        return found[str(version)]
    ref = registry.version_by_alias(model_name, ALIAS_CHALLENGER)
    if ref is None:
        raise ModelNotFound(
            f"model {model_name} has no '{ALIAS_CHALLENGER}' version to deploy (train one first, or pass --version)"
        )
    return ref


@task(name="current-champion", **_IO)
def current_champion(registry: Registry, model_name: str) -> ModelRef | None:
    return registry.version_by_alias(model_name, ALIAS_CHAMPION)


@task(name="load-version-contract", **_IO)
def load_version_contract(registry: Registry, ref: ModelRef) -> DataContract:
    """The data contract stored with the version: its features, target and timestamp."""
    return registry.load_contract(ref)


@task(name="cut-promotion-holdout", cache_policy=NO_CACHE)
def cut_promotion_holdout(
    frame: pd.DataFrame, contract: DataContract, config: PipelineConfig
) -> tuple[pd.DataFrame, str]:
    """The rows both models are scored on, and their fingerprint for the audit trail."""
    holdout = promotion.promotion_holdout(frame, contract, config)
    return holdout, data.fingerprint_frame(holdout)


@task(name="score-version", **_IO)
def score_version(
    registry: Registry, ref: ModelRef, holdout: pd.DataFrame
) -> tuple[promotion.Predictions, dict[str, float]]:
    """Load a version with its own contract and score it on the shared holdout."""
    return promotion.score_on_holdout(registry.load_model(ref.name, ref.version), holdout, registry.load_contract(ref))


@task(name="paired-significance", cache_policy=NO_CACHE)
def paired_significance(
    config: PipelineConfig,
    truth: np.ndarray,
    challenger: promotion.Predictions,
    champion: promotion.Predictions,
) -> promotion.PairedEvidence | None:
    """The configured paired test of challenger against champion (None when none is configured)."""
    return promotion.paired_evidence(
        config.promotion, config.model.task, truth, challenger, champion, config.model.seed
    )


@task(name="slice-metrics", cache_policy=NO_CACHE)
def slice_metrics(
    config: PipelineConfig, holdout: pd.DataFrame, truth: np.ndarray, predictions: promotion.Predictions
) -> evaluation.SliceReport:
    """One model's metrics per slice of `evaluation.segments` on the shared holdout (for compare_worst_slice)."""
    return evaluation.compute_slices(
        holdout, truth, predictions, config.model.task, config.evaluation, [config.promotion.primary_metric],
        config.model.seed,
    )


@task(name="stage-version", **_ONCE)
def stage_version(registry: Registry, model_name: str, version: str) -> None:
    """Give the candidate the `staging` alias, where the smoke test loads it from."""
    registry.set_alias(model_name, ALIAS_STAGING, version)


@task(name="clear-staging", **_IO)
def clear_staging(registry: Registry, model_name: str) -> None:
    registry.delete_alias(model_name, ALIAS_STAGING)


def _served_loader(registry: Registry, model_name: str, alias: str) -> Callable[[], smoke.ServedModel]:
    def load() -> smoke.ServedModel:
        ref = registry.version_by_alias(model_name, alias)
        if ref is None:
            raise ModelNotFound(f"model {model_name} has no '{alias}' version")
        pipeline = registry.load_model(model_name, alias)
        columns, example = registry.load_signature_and_example(ref)
        return smoke.ServedModel(ref.version, pipeline, registry.load_contract(ref), columns, example)

    return load


@task(name="smoke-test-staging", cache_policy=NO_CACHE)
def smoke_test_staging(
    registry: Registry, model_name: str, holdout: pd.DataFrame, config: PipelineConfig
) -> smoke.SmokeReport:
    """Load `staging` through the registry as serving does, then check outputs and latency."""
    return smoke.smoke_test(
        _served_loader(registry, model_name, ALIAS_STAGING),
        holdout,
        sample_rows=config.promotion.smoke_sample_rows,
        max_latency_ms=config.promotion.smoke_max_latency_ms,
        seed=config.model.seed,
    )


@task(name="promote-version", **_ONCE)
def promote_version(registry: Registry, model_name: str, version: str, expected: str | None) -> str | None:
    """Move `champion` from `expected` to the version (the old one becomes `previous-champion`); returns the old one."""
    return registry.promote_champion(model_name, version, expected)


@task(name="rollback-champion", **_ONCE)
def rollback_champion(registry: Registry, model_name: str) -> tuple[str | None, str]:
    """Move `champion` back to `previous-champion`; returns (demoted, restored)."""
    return registry.rollback_champion(model_name)


@task(name="record-audit", **_IO)
def record_audit(registry: Registry, record: AuditRecord) -> str:
    """Append the record to the model's audit log and mirror it in the version's tags."""
    return registry.append_audit(record)


@task(name="emit-model-event", cache_policy=NO_CACHE)
def emit_model_event(record: AuditRecord) -> str | None:
    """Announce the record as a Prefect event (automations and the UI's event feed see it)."""
    name, resource, payload = events.event_for(record)
    event = emit_event(event=name, resource=resource, payload=payload)
    return str(event.id) if event is not None else None


@task(name="watch-deployment", cache_policy=NO_CACHE)
def watch_deployment(model: str, policy: RollbackConfig, version: str, window_seconds: float) -> watch.WatchVerdict:
    """Poll the serving app's /metrics (MLOPS_SERVING_URL) for the window and judge the model's new champion."""
    return watch.watch_service(Settings(), model, version, policy, window_seconds)


@task(name="publish-deploy-summary", cache_policy=NO_CACHE)
def publish_deploy_summary(result: DeployResult) -> None:
    """The deploy summary as a Prefect markdown artifact."""
    create_markdown_artifact(
        key=artifact_key("deploy", result.model_name),
        markdown=result.to_markdown(),
        description=f"{result.status}: {result.model_name} v{result.candidate_version}",
    )
