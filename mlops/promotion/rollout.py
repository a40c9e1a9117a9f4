"""A rollout step judged on live evidence: continue, advance to the next step, promote, or abort.

Pure: the rollout flow gathers each version's live numbers (from the serving app's metrics and the
prediction log with its labels) and acts on the verdict. The order of the checks is the order of
urgency: a challenger that fails requests or is slow is aborted whatever its accuracy; in shadow,
one that disagrees with the champion too often is aborted before any user sees it; with labels,
one the sequential test finds worse is aborted as soon as the test is sure (and the test stays
valid however often the flow looks); a step that has not gathered its evidence in time is aborted
too, since a rollout nobody can judge should not creep on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from mlops.config import SHADOW, RolloutConfig
from mlops.promotion.sequential import Outcomes, SequentialEvidence, compare
from mlops.promotion.split import Action, TrafficSplit


@dataclass(frozen=True)
class VersionLive:
    """One version's live numbers since the rollout began (cumulative, so evidence is never thrown away)."""

    requests: int
    errors: int = 0
    p99_ms: float | None = None
    outcomes: Outcomes | None = None  # labelled rows' per-row outcomes, higher is better

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ShadowLive:
    """Shadow step: both versions answered the same rows."""

    rows: int
    agreement: float | None = None  # classifiers: share of rows with the same predicted class
    score_distance: float | None = None  # Kolmogorov-Smirnov distance between the versions' scores


@dataclass(frozen=True)
class StepEvidence:
    step: str | float  # "shadow" or the challenger's traffic share
    elapsed_minutes: float
    champion: VersionLive
    challenger: VersionLive
    shadow: ShadowLive | None = None
    # Labelled challenger rows answered during this step (the outcomes count the whole rollout):
    # each step must earn its own evidence before it passes. None: count the outcomes instead.
    challenger_step_labelled: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepVerdict:
    action: Action
    reasons: list[str] = field(default_factory=list)
    sequential: SequentialEvidence | None = None

    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sequential"] = self.sequential.to_dict() if self.sequential else None
        return data


def agreement(champion: Sequence[Any] | np.ndarray, challenger: Sequence[Any] | np.ndarray) -> float | None:
    """Share of rows both versions answered alike (None when there are none)."""
    a, b = np.asarray(champion), np.asarray(challenger)
    return float(np.mean(a == b)) if a.size else None


def score_distance(champion: Sequence[float] | np.ndarray, challenger: Sequence[float] | np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two scores' CDFs."""
    a, b = np.sort(np.asarray(champion, dtype=float)), np.sort(np.asarray(challenger, dtype=float))
    if not a.size or not b.size:
        return None
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / a.size - np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(gap)))


def _health(evidence: StepEvidence, policy: RolloutConfig) -> list[str]:
    live, reasons = evidence.challenger, []
    # Before min_requests a rate means little, except when the errors already exceed the bound at
    # min_requests: then no number of good requests to come can bring the rate back under it.
    if live.errors > policy.max_error_rate * max(live.requests, policy.min_requests):
        reasons.append(f"challenger error rate {live.error_rate:.1%} over {live.requests} requests "
                       f"> {policy.max_error_rate:.1%}")
    champion_p99 = evidence.champion.p99_ms
    # A shadow scoring runs in the background after the caller's answer, queued behind it: its
    # latency is not a caller's, so latency is judged on the traffic steps only.
    shadow = evidence.step == SHADOW
    if not shadow and live.requests >= policy.min_requests and live.p99_ms is not None and champion_p99:
        if live.p99_ms > policy.max_p99_ratio * champion_p99:
            reasons.append(f"challenger p99 {live.p99_ms:.0f} ms > {policy.max_p99_ratio:g} x champion's {champion_p99:.0f} ms")
    return reasons


def _shadow(evidence: StepEvidence, policy: RolloutConfig) -> tuple[list[str], bool]:
    """Shadow's reasons to abort, and whether it has enough rows to pass."""
    shadow = evidence.shadow or ShadowLive(0)
    if shadow.rows < policy.min_requests:
        return [], False
    reasons = []
    if shadow.agreement is not None and shadow.agreement < policy.min_agreement:
        reasons.append(f"versions agree on {shadow.agreement:.1%} of {shadow.rows} shadowed rows < {policy.min_agreement:.0%}")
    if shadow.score_distance is not None and shadow.score_distance > policy.max_score_distance:
        reasons.append(f"score distributions {shadow.score_distance:.3f} apart (KS) > {policy.max_score_distance:g}")
    return reasons, True


def judge_step(evidence: StepEvidence, policy: RolloutConfig, last: bool) -> StepVerdict:
    """The verdict on one look at a step; `last` says whether passing it promotes."""
    passed = "promote" if last else "advance"
    health = _health(evidence, policy)
    if health:
        return StepVerdict("abort", health)
    if evidence.step == SHADOW:
        reasons, enough = _shadow(evidence, policy)
        if reasons:
            return StepVerdict("abort", reasons)
        if enough:
            return StepVerdict(passed, [f"shadow: {evidence.shadow.rows} rows compared within bounds"])  # type: ignore[union-attr]
        return _waiting(evidence, policy, [f"shadow: {evidence.shadow.rows if evidence.shadow else 0} of "
                                           f"{policy.min_requests} rows compared"])

    sequential = None
    champion, challenger = evidence.champion.outcomes, evidence.challenger.outcomes
    if champion is not None and challenger is not None:
        sequential = compare(champion, challenger, policy.alpha, policy.sequential_tau, max(policy.min_labelled_rows, 1))
        if sequential.verdict == "worse":
            return StepVerdict("abort", [sequential.summary()], sequential)
    labelled = evidence.challenger_step_labelled
    if labelled is None:
        labelled = challenger.n if challenger else 0
    missing = []
    if evidence.challenger.requests < policy.min_requests:
        missing.append(f"{evidence.challenger.requests} of {policy.min_requests} challenger requests")
    if labelled < policy.min_labelled_rows:
        missing.append(f"{labelled} of {policy.min_labelled_rows} labelled challenger rows this step")
    if not missing:
        summary = sequential.summary() if sequential else "no labelled rows required"
        return StepVerdict(passed, [f"{evidence.step:.0%} of traffic: {summary}"], sequential)
    return _waiting(evidence, policy, missing, sequential)


def _waiting(
    evidence: StepEvidence, policy: RolloutConfig, missing: list[str], sequential: SequentialEvidence | None = None,
) -> StepVerdict:
    if evidence.elapsed_minutes >= policy.max_minutes_per_step:
        return StepVerdict("abort", [f"not enough evidence after {evidence.elapsed_minutes:.0f} min "
                                     f"(limit {policy.max_minutes_per_step:g}): {', '.join(missing)}"], sequential)
    return StepVerdict("continue", [f"waiting: {', '.join(missing)}"], sequential)


# -- driving the steps ------------------------------------------------------------------------


class RolloutIO(Protocol):
    """What the driver needs from the world (the rollout task: registry, serving, log; fakes in tests)."""

    def publish(self, split: TrafficSplit) -> None:
        """Make `split` the traffic every serving replica routes by."""

    def look(self, split: TrafficSplit) -> StepEvidence:
        """Gather the live evidence of the current step."""

    def record_step(self, split: TrafficSplit, verdict: StepVerdict, evidence: StepEvidence) -> None:
        """Write a finished step (passed or aborted) into the audit trail."""

    def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime: ...


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended: promote (every step passed) or abort, with each finished step's verdict."""

    promote: bool
    reason: str
    split: TrafficSplit  # the split at the end: its step is where the rollout stopped
    steps: list[dict[str, Any]] = field(default_factory=list)
    looks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "stopped_at": self.split.step,
                "steps": self.steps, "looks": self.looks}


def start_split(
    model_name: str, version: str, champion: str | None, steps: Sequence[str | float], now: datetime,
    flow_run_id: str | None = None,
) -> TrafficSplit:
    stamp = now.astimezone(UTC).isoformat()
    return TrafficSplit(model_name, str(version), champion, list(steps), 0, stamp, stamp, flow_run_id)


def minutes_since(stamp: str, now: datetime) -> float:
    return (now - datetime.fromisoformat(stamp)).total_seconds() / 60.0


def drive_rollout(split: TrafficSplit, policy: RolloutConfig, io: RolloutIO) -> RolloutOutcome:
    """Move the challenger through the steps, judging each look, until it is promoted or aborted.

    Each look's verdict is published with the split (so `mlops rollout status` shows the latest
    evidence); each finished step goes into the audit trail. The caller clears the split and moves
    the aliases: the driver never touches `champion`.
    """
    io.publish(split)
    steps: list[dict[str, Any]] = []
    looks = 0
    while True:
        evidence = io.look(split)
        looks += 1
        verdict = judge_step(evidence, policy, last=split.last_step)
        split = split.with_look({"at": io.now().isoformat(), "verdict": verdict.to_dict(), "evidence": evidence.to_dict()})
        if verdict.action == "continue":
            io.publish(split)
            io.sleep(policy.poll_seconds)
            continue
        io.record_step(split, verdict, evidence)
        steps.append({"step": split.step, "action": verdict.action, "reason": verdict.reason()})
        if verdict.action in ("abort", "promote"):
            done = "aborted" if verdict.action == "abort" else "passed every step"
            reason = f"rollout {done} at {split.describe_step()}: {verdict.reason()}"
            return RolloutOutcome(verdict.action == "promote", reason, split, steps, looks)
        split = split.at_step(split.step_index + 1, io.now().isoformat())
        io.publish(split)
