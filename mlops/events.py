"""Names and payloads of the events the pipeline emits about a model's lifecycle.

Plain strings only: the tasks layer hands these to Prefect, automations and dashboards match on them,
so they live in one place and never change silently.
"""

from __future__ import annotations

from typing import Any

from mlops.audit import (
    ACTION_PROMOTED,
    ACTION_REFUSED,
    ACTION_ROLLED_BACK,
    ACTION_ROLLOUT_STEP,
    AuditRecord,
)
from mlops.features.freshness import Freshness
from mlops.text import printable

# A monitoring breach: the retrain automation in prefect.yaml listens to both.
DRIFT_DETECTED = "mlops.drift.detected"
PERFORMANCE_DEGRADED = "mlops.performance.degraded"

# A move (or refusal) recorded in the audit trail.
MODEL_PROMOTED = "mlops.model.promoted"
MODEL_REJECTED = "mlops.model.rejected"
MODEL_ROLLED_BACK = "mlops.model.rolled-back"
MODEL_ROLLOUT_STEP = "mlops.model.rollout-step"

EVENT_BY_ACTION: dict[str, str] = {
    ACTION_PROMOTED: MODEL_PROMOTED,
    ACTION_REFUSED: MODEL_REJECTED,
    ACTION_ROLLED_BACK: MODEL_ROLLED_BACK,
    ACTION_ROLLOUT_STEP: MODEL_ROLLOUT_STEP,
}

RESOURCE_PREFIX = "mlops.model."

# A deploy paused for a person's approval (approval.required): notifications tell someone to answer.
APPROVAL_REQUESTED = "mlops.approval.requested"

# A feature view past its staleness bound (or never materialized): emitted by the materialize flow
# when a run fails and by the monitor of a model fed by the view's feature service.
FEATURES_STALE = "mlops.features.stale"
FEATURE_VIEW_PREFIX = "mlops.feature_view."


def model_resource(model_name: str) -> dict[str, str]:
    """The resource an event is about: one registered model, whatever its version."""
    return {"prefect.resource.id": f"{RESOURCE_PREFIX}{model_name}", "prefect.resource.name": model_name}


def event_for(record: AuditRecord) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(event name, resource, payload) announcing an audit record; the payload stays small."""
    metrics = record.evidence.get("metrics", {})
    payload: dict[str, Any] = {
        "model_name": record.model_name,
        "action": record.action,
        "from_version": record.from_version,
        "to_version": record.to_version,
        # Notification bodies quote it: escaped, one line; the audit record keeps it as given.
        "reason": printable(record.reason),
        "metrics": metrics,
        "primary_metric": record.evidence.get("primary_metric"),
        "flow_run_id": record.flow_run_id,
        "audit_record_id": record.record_id,
        "recorded_at": record.recorded_at,
    }
    return EVENT_BY_ACTION[record.action], model_resource(record.model_name), payload


def feature_view_resource(view: str) -> dict[str, str]:
    """The resource a freshness event is about: one feature view of the store."""
    return {"prefect.resource.id": f"{FEATURE_VIEW_PREFIX}{view}", "prefect.resource.name": view}


def stale_event(freshness: Freshness, source: str, model_name: str | None = None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(event name, resource, payload) announcing a stale view; `source` is the flow that found it."""
    payload: dict[str, Any] = {**freshness.to_dict(), "source": source}
    if model_name is not None:
        payload["model_name"] = model_name
    return FEATURES_STALE, feature_view_resource(freshness.view), payload


def approval_requested(model_name: str, candidate: str, champion: str | None, reason: str,
                       timeout_minutes: float) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(event name, resource, payload) asking a person to approve or reject a promotion."""
    payload = {"model_name": model_name, "candidate_version": candidate, "champion_version": champion,
               "reason": printable(reason), "timeout_minutes": timeout_minutes}
    return APPROVAL_REQUESTED, model_resource(model_name), payload
