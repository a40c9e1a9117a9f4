"""A rollout step's verdict on live evidence (mlops.promotion.rollout), one branch at a time."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.config import RolloutConfig, parse_config
from mlops.errors import ConfigError
from mlops.promotion.rollout import (
    ShadowLive,
    StepEvidence,
    VersionLive,
    agreement,
    judge_step,
    score_distance,
)
from mlops.promotion.sequential import Outcomes

POLICY = RolloutConfig(min_requests=200, min_labelled_rows=100, max_minutes_per_step=30)
HEALTHY = VersionLive(requests=5000, errors=0, p99_ms=20.0, outcomes=Outcomes.of_counts(2000, 1600))


def _step(step, challenger: VersionLive, minutes: float = 5.0, shadow: ShadowLive | None = None,
          champion: VersionLive = HEALTHY) -> StepEvidence:
    return StepEvidence(step=step, elapsed_minutes=minutes, champion=champion, challenger=challenger, shadow=shadow)


def test_a_healthy_traffic_step_with_enough_evidence_advances_and_the_last_promotes():
    challenger = VersionLive(requests=400, errors=1, p99_ms=22.0, outcomes=Outcomes.of_counts(150, 121))
    assert judge_step(_step(0.05, challenger), POLICY, last=False).action == "advance"
    verdict = judge_step(_step(0.5, challenger), POLICY, last=True)
    assert verdict.action == "promote" and verdict.sequential.verdict == "undecided"
    assert "50% of traffic" in verdict.reason()


def test_a_challenger_worse_on_labels_is_aborted_with_the_sequential_evidence():
    worse = VersionLive(requests=3000, p99_ms=20.0, outcomes=Outcomes.of_counts(2000, 1400))  # 70% vs 80%
    verdict = judge_step(_step(0.25, worse), POLICY, last=False)
    assert verdict.action == "abort" and "challenger worse" in verdict.reason()
    assert verdict.sequential.p_value <= POLICY.alpha
    assert verdict.to_dict()["sequential"]["verdict"] == "worse"


def test_errors_abort_at_once_even_before_the_minimum_requests():
    # 10 failures out of 50: even 150 good requests to come leave the rate at 5% > 2%.
    failing = VersionLive(requests=50, errors=10, p99_ms=20.0)
    verdict = judge_step(_step(0.05, failing), POLICY, last=False)
    assert verdict.action == "abort" and "error rate 20.0%" in verdict.reason()
    # 2 failures out of 50 could still end under 2% of 200: wait.
    assert judge_step(_step(0.05, VersionLive(requests=50, errors=2)), POLICY, last=False).action == "continue"


def test_a_slow_challenger_is_aborted():
    slow = VersionLive(requests=500, p99_ms=45.0, outcomes=Outcomes.of_counts(150, 120))
    verdict = judge_step(_step(0.05, slow), POLICY, last=False)
    assert verdict.action == "abort" and "p99 45 ms > 1.5 x champion's 20 ms" in verdict.reason()


def test_waiting_for_evidence_continues_until_the_step_times_out():
    thin = VersionLive(requests=120, p99_ms=20.0, outcomes=Outcomes.of_counts(30, 25))
    waiting = judge_step(_step(0.05, thin, minutes=10), POLICY, last=False)
    assert waiting.action == "continue"
    assert "120 of 200 challenger requests" in waiting.reason() and "30 of 100 labelled" in waiting.reason()
    timed_out = judge_step(_step(0.05, thin, minutes=30), POLICY, last=False)
    assert timed_out.action == "abort" and "not enough evidence after 30 min" in timed_out.reason()


def test_shadow_passes_on_agreement_and_aborts_on_disagreement_or_distant_scores():
    live = VersionLive(requests=300, p99_ms=20.0)
    ok = judge_step(_step("shadow", live, shadow=ShadowLive(300, agreement=0.96, score_distance=0.04)), POLICY, False)
    assert ok.action == "advance"
    disagree = judge_step(_step("shadow", live, shadow=ShadowLive(300, agreement=0.7, score_distance=0.04)), POLICY, False)
    assert disagree.action == "abort" and "agree on 70.0%" in disagree.reason()
    apart = judge_step(_step("shadow", live, shadow=ShadowLive(300, agreement=0.95, score_distance=0.3)), POLICY, False)
    assert apart.action == "abort" and "0.300 apart" in apart.reason()
    early = judge_step(_step("shadow", live, shadow=ShadowLive(50, agreement=0.5)), POLICY, False)
    assert early.action == "continue" and "50 of 200 rows compared" in early.reason()


def test_agreement_and_ks_distance_on_small_arrays():
    assert agreement([1, 0, 1, 1], [1, 1, 1, 1]) == 0.75 and agreement([], []) is None
    assert score_distance([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0
    assert score_distance([0.1, 0.2], [0.8, 0.9]) == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 4000), rng.normal(0.5, 1, 4000)
    assert score_distance(a, b) == pytest.approx(0.197, abs=0.03)  # Phi(0.25) - Phi(-0.25)
    assert score_distance([], [1.0]) is None


@pytest.mark.parametrize("steps, message", [
    ([0.5, 0.25], "rise"),
    ([0.05, "shadow"], "first step"),
    (["shadow", "shadow", 0.5], "more than once"),
    ([0.0, 0.5], "above 0"),
    ([0.5, 1.5], "at most 1"),
])
def test_bad_step_lists_are_refused_naming_the_problem(steps, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"dataset": {"uri": "x.parquet", "target": "y"}, "model": {"name": "m"}, "rollout": {"steps": steps}})


def test_rollout_is_off_by_default():
    config = parse_config({"dataset": {"uri": "x.parquet", "target": "y"}, "model": {"name": "m"}})
    assert config.rollout.enabled is False and config.rollout.steps == ["shadow", 0.05, 0.25, 0.5]


def test_enabling_the_rollout_is_refused_until_a_flow_drives_it():
    with pytest.raises(ConfigError, match="not available yet"):
        parse_config({"dataset": {"uri": "x.parquet", "target": "y"}, "model": {"name": "m"}, "rollout": {"enabled": True}})
