"""The `rollback` flow: put the previous champion back, with an audit record and an event."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from mlops import audit
from mlops.catalogue import ConfigOverrides
from mlops.config import PipelineConfig
from mlops.errors import ModelNotFound
from mlops.registry import ALIAS_CHAMPION, ALIAS_PREVIOUS_CHAMPION, open_registry
from mlops.results import RollbackResult
from mlops.text import printable
from tasks.catalogue import load_model_config
from tasks.deploy import (
    current_champion,
    emit_model_event,
    record_audit,
    rollback_champion,
)


def _tag_metrics(tags: dict[str, str]) -> dict[str, float]:
    try:
        value = json.loads(tags.get("metrics", "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@flow(name="rollback", log_prints=True)
def rollback(
    config: PipelineConfig,
    reason: str = "manual rollback",
    trigger: dict[str, Any] | None = None,
    expected_champion: str | None = None,
) -> RollbackResult:
    """Move `champion` back to `previous-champion`; the demoted version gets the alias `rolled-back`.

    Fails (ModelNotFound) when there is no `previous-champion`, and when `expected_champion` is given
    but another version is champion by now (someone promoted in between: not ours to undo).

    Args:
        config: The pipeline config; `model.name` names the model.
        reason: Why, kept in the audit trail.
        trigger: What asked for the rollback (the post-deployment watch's verdict), for the audit trail.
        expected_champion: Roll back only if this version still is champion.
    """
    logger = get_run_logger()
    registry = open_registry()
    name = config.model.name
    champion = current_champion(registry, name)
    if expected_champion is not None and (champion is None or champion.version != str(expected_champion)):
        found = f"v{champion.version}" if champion else "none"
        raise ModelNotFound(f"model {name}: champion is {found}, not v{expected_champion}; not rolling back")
    previous = registry.version_by_alias(name, ALIAS_PREVIOUS_CHAMPION)
    if previous is None:
        raise ModelNotFound(f"model {name} has no '{ALIAS_PREVIOUS_CHAMPION}' version to roll back to")
    demoted, restored = rollback_champion(registry, name)
    metrics = {"rolled_back": _tag_metrics(dict(champion.tags)) if champion else {},
               "restored": _tag_metrics(dict(previous.tags))}
    evidence = audit.build_evidence(metrics=metrics, trigger=trigger)
    evidence["metrics_source"] = "training holdout (version tags)"
    run_id = flow_run.get_id()
    record = audit.new_record(
        audit.ACTION_ROLLED_BACK, name, from_version=demoted, to_version=restored,
        decision={"rollback": True, "trigger": "watch" if trigger and "watch" in trigger else "manual",
                  "aliases": {ALIAS_CHAMPION: restored, "rolled-back": demoted}},
        reason=reason, evidence=evidence, flow_run_id=str(run_id) if run_id else None,
        actor=audit.default_actor("rollback flow"),
    )
    path = record_audit(registry, record)
    emit_model_event(record)
    # The reason is as typed (`--reason`): escaped, it is one log line that cannot drive a terminal.
    logger.warning("rolled back %s: champion v%s -> v%s (%s)", name, demoted, restored, printable(reason))
    return RollbackResult(
        status="rolled-back", model_name=name, from_version=demoted, to_version=restored, reason=reason,
        audit_record=path, flow_run_id=str(run_id) if run_id else None,
    )


@flow(name="rollback", log_prints=True)
def rollback_model(
    model: str, overrides: ConfigOverrides | None = None, reason: str = "manual rollback"
) -> RollbackResult:
    """Roll a catalogue model's champion back to `previous-champion` (the same run as `rollback`).

    Args:
        model: The model: one of the catalogue's (configs/*.yaml) model names.
        overrides: Config keys to change for this run only; keys left empty keep the file's value.
        reason: Why, kept in the audit trail.
    """
    resolved = load_model_config(model, overrides)
    return rollback.fn(config=resolved.config, reason=reason)
