"""Names and payloads of the events the pipeline emits about a model's lifecycle.

Plain strings only: the tasks layer hands these to Prefect, automations and dashboards match on them,
so they live in one place and never change silently.
"""

from __future__ import annotations

from typing import Any

from mlops.audit import ACTION_PROMOTED, ACTION_REFUSED, ACTION_ROLLED_BACK, AuditRecord

# A monitoring breach: the retrain automation in prefect.yaml listens to both.
DRIFT_DETECTED = "mlops.drift.detected"
PERFORMANCE_DEGRADED = "mlops.performance.degraded"

# A move (or refusal) recorded in the audit trail.
MODEL_PROMOTED = "mlops.model.promoted"
MODEL_REJECTED = "mlops.model.rejected"
MODEL_ROLLED_BACK = "mlops.model.rolled-back"

EVENT_BY_ACTION: dict[str, str] = {
    ACTION_PROMOTED: MODEL_PROMOTED,
    ACTION_REFUSED: MODEL_REJECTED,
    ACTION_ROLLED_BACK: MODEL_ROLLED_BACK,
}

RESOURCE_PREFIX = "mlops.model."


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
        "reason": record.reason,
        "metrics": metrics,
        "primary_metric": record.evidence.get("primary_metric"),
        "flow_run_id": record.flow_run_id,
        "audit_record_id": record.record_id,
        "recorded_at": record.recorded_at,
    }
    return EVENT_BY_ACTION[record.action], model_resource(record.model_name), payload
