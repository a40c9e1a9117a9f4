"""A person's verdict on a promotion: what they are shown, what they answered, what the audit keeps.

Pure: the deploy flow pauses for the answer (Prefect's run input, tasks/approval.py) and acts on
it. Who decided, when and why go into the promotion's (or refusal's) audit record; no answer
within the timeout is a refusal like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class ApprovalVerdict:
    approved: bool
    reviewer: str | None
    reason: str
    decided_at: str
    timed_out: bool = False

    @classmethod
    def answered(cls, approved: bool, reviewer: str, reason: str) -> ApprovalVerdict:
        return cls(approved, reviewer.strip() or "unknown", reason.strip(), datetime.now(UTC).isoformat())

    @classmethod
    def timeout(cls, minutes: float) -> ApprovalVerdict:
        return cls(False, None, f"no approval within {minutes:g} min", datetime.now(UTC).isoformat(), timed_out=True)

    def refusal(self) -> str:
        """The refusal reason a rejected or unanswered request leaves in the audit trail."""
        if self.timed_out:
            return f"approval timed out: {self.reason}"
        return f"rejected by {self.reviewer}: {self.reason or 'no reason given'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_answer(answer: Mapping[str, Any]) -> str:
    """A recorded answer in one line: "approved by ann: read the card" / "rejected by bob: slice gap"."""
    verdict = "approved" if answer.get("approve") else "rejected"
    reviewer = str(answer.get("reviewer") or "").strip() or "unknown"
    reason = str(answer.get("reason") or "").strip()
    return f"{verdict} by {reviewer}" + (f": {reason}" if reason else "")


def lost_race(sent: Mapping[str, Any], recorded: Mapping[str, Any] | None) -> str | None:
    """Why our answer did not decide the run, or None when the answer the run holds is ours.

    Two people answering one paused run race: the server resumes it once and keeps the first
    answer; the other learns what was decided instead. An identical answer decided nothing
    different, so it is not a loss.
    """
    if recorded is None:
        return None
    keys = ("approve", "reviewer", "reason")
    if all(recorded.get(key) == sent.get(key) for key in keys):
        return None
    return f"already {describe_answer(recorded)}"


def request_markdown(
    model: str, candidate: str, champion: str | None, decision_reason: str,
    metrics: Mapping[str, Mapping[str, float]], timeout_minutes: float,
    rollout: Mapping[str, Any] | None = None,
) -> str:
    """What the reviewer reads beside the approve/reject form: the offline evidence in brief, and
    the live rollout's steps when the approval is asked before full traffic."""
    lines = [
        f"# Approve {model} v{candidate}?",
        "",
        f"Replaces {'champion v' + champion if champion else 'no champion (first promotion)'}. "
        f"The offline gate allowed it: {decision_reason}.",
        "",
        "| metric | challenger | champion |",
        "|---|---|---|",
    ]
    challenger, current = metrics.get("challenger", {}), metrics.get("champion") or {}
    for name in sorted(challenger):
        old = current.get(name)
        lines.append(f"| {name} | {challenger[name]:.4f} | {'-' if old is None else f'{old:.4f}'} |")
    lines += ["", f"The challenger's model card: `mlops card --model {model} --version {candidate} --out card.html` "
              "(also the run artifact `card/model_card.html`)."]
    if rollout:
        lines += ["", "Live rollout so far (the challenger keeps its last share while you decide):", ""]
        lines += [f"- {step['step']}: {step['action']}: {step['reason']}" for step in rollout.get("steps", [])]
    lines += [
        "",
        f"Answer within {timeout_minutes:g} min, in this flow run's Resume form or with "
        f"`mlops approve --model {model}` / `mlops reject --model {model} --reason TEXT`; "
        "no answer refuses the promotion.",
    ]
    return "\n".join(lines) + "\n"
