"""The promotion audit trail: one immutable record per promotion, refusal or rollback.

MLflow keeps no history of aliases (moving `champion` forgets where it was), so every move and every
refusal is written down here. `registry.Registry.append_audit` stores the records; this module only
defines them and renders them.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlops.text import printable

ACTION_PROMOTED = "promoted"
ACTION_REFUSED = "refused"
ACTION_ROLLED_BACK = "rolled-back"
# One finished step of a progressive rollout (passed or aborted), with its live evidence.
ACTION_ROLLOUT_STEP = "rollout-step"
ACTIONS = (ACTION_PROMOTED, ACTION_REFUSED, ACTION_ROLLED_BACK, ACTION_ROLLOUT_STEP)

# Version tags that mirror the latest record on the version it concerns (the full log is the artifact).
TAG_LAST_ACTION = "audit.last_action"
TAG_LAST_REASON = "audit.last_reason"
TAG_LAST_AT = "audit.last_at"
TAG_LAST_RECORD = "audit.last_record"
TAG_LAST_FLOW_RUN = "audit.last_flow_run_id"

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AuditRecord:
    """What happened to which versions, why, on what evidence, when, and who did it."""

    action: str
    model_name: str
    from_version: str | None
    to_version: str | None
    decision: dict[str, Any]
    reason: str
    evidence: dict[str, Any]
    flow_run_id: str | None
    recorded_at: str  # ISO 8601, UTC, microseconds: sorts as text
    actor: str
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action '{self.action}' (known: {', '.join(ACTIONS)})")

    @property
    def artifact_name(self) -> str:
        """File name in the append-only log: time first so a directory listing is chronological."""
        stamp = datetime.fromisoformat(self.recorded_at).strftime("%Y%m%dT%H%M%S.%fZ")
        return f"{stamp}-{self.record_id}.json"

    @property
    def affected_version(self) -> str | None:
        """The version whose tags mirror this record: the new champion, the refused or the rolled-back one."""
        return self.from_version if self.action == ACTION_ROLLED_BACK else self.to_version

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AuditRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> AuditRecord:
        return cls.from_dict(json.loads(text))

    def version_tags(self) -> dict[str, str]:
        """Tags for the affected version, so the registry UI shows the latest verdict at a glance."""
        return {
            TAG_LAST_ACTION: self.action,
            TAG_LAST_REASON: self.reason,
            TAG_LAST_AT: self.recorded_at,
            TAG_LAST_RECORD: self.artifact_name,
            TAG_LAST_FLOW_RUN: self.flow_run_id or "none",
        }


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_record(
    action: str,
    model_name: str,
    *,
    from_version: str | None,
    to_version: str | None,
    decision: Mapping[str, Any],
    reason: str,
    evidence: Mapping[str, Any],
    flow_run_id: str | None,
    actor: str,
    now: datetime | None = None,
) -> AuditRecord:
    """A record stamped with the current UTC time and a fresh id."""
    stamp = (now or utc_now()).astimezone(UTC).isoformat(timespec="microseconds")
    return AuditRecord(
        action=action,
        model_name=model_name,
        from_version=from_version,
        to_version=to_version,
        decision=dict(decision),
        reason=reason,
        evidence=dict(evidence),
        flow_run_id=flow_run_id,
        recorded_at=stamp,
        actor=actor,
    )


def build_evidence(
    *,
    primary_metric: str | None = None,
    metrics: Mapping[str, Mapping[str, float] | None] | None = None,
    holdout: Mapping[str, Any] | None = None,
    version_tags: Mapping[str, str] | None = None,
    paired: Mapping[str, Any] | None = None,
    smoke: Mapping[str, Any] | None = None,
    watch: Mapping[str, Any] | None = None,
    trigger: Mapping[str, Any] | None = None,
    approval: Mapping[str, Any] | None = None,
    rollout: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evidence part of a record: metrics of both models, the holdout, validation, tests, trigger,
    a person's approval when one was asked for, and the live rollout's steps when one ran.

    `validation` and the lineage come from the challenger's version tags (written at training time).
    """
    tags = dict(version_tags or {})
    lineage = {k: tags[k] for k in ("data_uri", "data_fingerprint", "config_hash", "prefect_flow_run_id") if k in tags}
    return {
        "primary_metric": primary_metric,
        "metrics": {role: dict(values) for role, values in (metrics or {}).items() if values is not None},
        "holdout": dict(holdout or {}),
        "validation": _parsed(tags.get("validation")),
        "lineage": lineage,
        "paired_test": dict(paired) if paired else None,
        "smoke": dict(smoke) if smoke else None,
        "watch": dict(watch) if watch else None,
        "trigger": dict(trigger) if trigger else None,
        **({"approval": dict(approval)} if approval else {}),
        **({"rollout": dict(rollout)} if rollout else {}),
        **({"card": dict(card)} if card else {}),
    }


def _parsed(tag: str | None) -> Any:
    if tag is None:
        return None
    try:
        return json.loads(tag)
    except ValueError:  # a truncated or hand-written tag is kept as text rather than dropped
        return tag


def default_actor(via: str) -> str:
    """Who acts: the OS user and host running the flow, and through which entry point."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers often run as a uid with no passwd entry
        user = "unknown"
    return f"{user}@{socket.gethostname()} via {via}"


def sort_records(records: Iterable[AuditRecord]) -> list[AuditRecord]:
    """Oldest first; the id breaks ties between records of the same microsecond."""
    return sorted(records, key=lambda r: (r.recorded_at, r.record_id))


def _version(value: str | None) -> str:
    return f"v{value}" if value else "-"


def render_table(records: Iterable[AuditRecord]) -> str:
    """A plain-text table, oldest first (newest last, next to the prompt)."""
    rows = [("time (UTC)", "action", "from", "to", "actor", "reason")]
    for r in sort_records(records):
        when = r.recorded_at.replace("T", " ")[:19]
        # Actor and reason are as people typed them: escaped, a record is one row that cannot
        # forge another (an LF in a reason once printed a second, made-up record) or drive the terminal.
        cells = (when, r.action, _version(r.from_version), _version(r.to_version), r.actor, r.reason)
        rows.append(tuple(printable(cell) for cell in cells))
    if len(rows) == 1:
        return "no audit records"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)
