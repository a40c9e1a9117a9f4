"""What `mlops rollout status` shows: the split serving routes by, its last look, and the finished steps."""

from __future__ import annotations

from typing import Any

from mlops import audit
from mlops.errors import BrokenSplit
from mlops.text import printable


def rollout_status(registry: Any, name: str) -> dict[str, Any]:
    """The rollout in progress (or the latest one, when none is): split, last look and finished steps.

    `registry` is a `mlops.registry.Registry` (its split and its audit log are read). A rollout
    tag that is not a split raises BrokenSplit, naming the model.
    """
    try:
        split = registry.rollout_split(name)
    except BrokenSplit as err:  # exit 2, one line: what serving does about it too
        raise BrokenSplit(f"model {name}: {err}; serving routes to the champion only") from None
    records = [r for r in audit.sort_records(registry.read_audit(name)) if r.action == audit.ACTION_ROLLOUT_STEP]
    started = split.started_at if split is not None else (records[-1].evidence.get("rollout_started_at") if records else None)
    records = [r for r in records if r.evidence.get("rollout_started_at") == started]
    return {
        "model_name": name,
        "active": split is not None,
        "rollout_started_at": started,
        "split": split.to_dict() if split is not None else None,
        "steps": [{"step": r.evidence.get("step"), "action": r.decision.get("action"), "reason": r.reason,
                   "recorded_at": r.recorded_at, "version": r.to_version} for r in records],
    }


def _live_line(side: str, live: dict[str, Any]) -> str:
    outcomes = live.get("outcomes") or {}
    accuracy = f", labelled {outcomes['n']} (mean outcome {outcomes['mean']:.4f})" if outcomes.get("n") else ""
    p99 = f", p99 {live['p99_ms']:.0f} ms" if live.get("p99_ms") is not None else ""
    return f"  {side:<11} {live.get('requests', 0)} requests, {live.get('errors', 0)} errors{p99}{accuracy}"


def render_status(status: dict[str, Any]) -> str:
    """The status as text for a terminal."""
    name = status["model_name"]
    if not status["active"] and not status["steps"]:
        return f"{name}: no rollout has run"
    lines = []
    split = status["split"]
    if split is not None:
        step = "shadow (challenger scores unseen)" if split["step"] == "shadow" else f"{split['challenger_share']:.0%} of traffic"
        lines.append(f"{name}: rolling out v{split['version']} against champion v{split['champion_version']}, "
                     f"step {split['step_index'] + 1} of {len(split['steps'])}: {step}, since {split['step_started_at']}")
        look = split.get("last_look") or {}
        if look:
            verdict = look.get("verdict", {})
            lines.append(f"  last look  {look.get('at')}: {verdict.get('action')}: {'; '.join(verdict.get('reasons', []))}")
            evidence = look.get("evidence", {})
            for side in ("champion", "challenger"):
                if side in evidence:
                    lines.append(_live_line(side, evidence[side]))
            shadow = evidence.get("shadow")
            if shadow:
                lines.append(f"  shadow      {shadow['rows']} rows paired, agreement {shadow.get('agreement')}, "
                             f"KS distance {shadow.get('score_distance')}")
    else:
        lines.append(f"{name}: no rollout in progress; the latest began {status['rollout_started_at']}")
    for step in status["steps"]:
        lines.append(f"  {step['recorded_at']}  v{step['version']}  {step['reason']}")
    # Tag values and reasons are whatever was written to the registry: each line escaped stays one line.
    return "\n".join(printable(line) for line in lines)
