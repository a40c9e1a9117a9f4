"""A rollout step's verdict on live evidence (mlops.promotion.rollout), one branch at a time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.config import RolloutConfig, parse_config
from mlops.errors import BrokenSplit, ConfigError
from mlops.promotion.live import shadow_live, version_outcomes
from mlops.promotion.rollout import (
    ShadowLive,
    StepEvidence,
    VersionLive,
    agreement,
    drive_rollout,
    judge_step,
    score_distance,
    start_split,
)
from mlops.promotion.sequential import Outcomes
from mlops.promotion.split import ROLLOUT_TAG, TrafficSplit
from mlops.promotion.status import render_status, rollout_status

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
    # In shadow the challenger scores after the caller's answer: its latency is no caller's.
    shadow = ShadowLive(rows=500, agreement=0.97, score_distance=0.02)
    assert judge_step(_step("shadow", slow, shadow=shadow), POLICY, last=False).action == "advance"


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


# -- the driver, against a fake world --------------------------------------------------------


class FakeWorld:
    """Serving and the log as a script: `evidence(split, look)` gives each look's evidence."""

    def __init__(self, evidence) -> None:
        self.evidence = evidence
        self.published: list[TrafficSplit] = []
        self.recorded: list[tuple[str | float, str]] = []
        self.clock = datetime(2026, 12, 2, tzinfo=UTC)
        self.looks = 0

    def publish(self, split: TrafficSplit) -> None:
        # Every split the driver publishes is one every replica can read back (never a broken split).
        assert TrafficSplit.from_tag(split.to_tag()) == split
        self.published.append(split)

    def look(self, split: TrafficSplit) -> StepEvidence:
        self.looks += 1
        return self.evidence(split, self.looks)

    def record_step(self, split, verdict, evidence) -> None:
        self.recorded.append((split.step, verdict.action))

    def sleep(self, seconds: float) -> None:
        self.clock += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self.clock


def _live(split: TrafficSplit, challenger: VersionLive) -> StepEvidence:
    shadow = ShadowLive(rows=500, agreement=0.97, score_distance=0.02) if split.shadow else None
    return StepEvidence(step=split.step, elapsed_minutes=1.0, champion=HEALTHY, challenger=challenger, shadow=shadow)


def _drive(evidence, steps=("shadow", 0.05, 0.5)):
    world = FakeWorld(evidence)
    split = start_split("churn", "2", "1", steps, world.now())
    return drive_rollout(split, POLICY, world), world


def test_a_sound_challenger_passes_every_step_in_order_and_is_promoted():
    good = VersionLive(requests=400, errors=0, p99_ms=21.0, outcomes=Outcomes.of_counts(300, 241))
    outcome, world = _drive(lambda split, look: _live(split, good))
    assert outcome.promote and "passed every step" in outcome.reason
    assert world.recorded == [("shadow", "advance"), (0.05, "advance"), (0.5, "promote")]
    # Every step was published before it was judged, in order; the final split is the last step.
    assert [p.step for p in world.published if not p.last_look] == ["shadow", 0.05, 0.5]
    assert outcome.split.step == 0.5


def test_a_challenger_worse_on_labels_is_aborted_at_the_first_traffic_step():
    worse = VersionLive(requests=400, errors=0, p99_ms=21.0, outcomes=Outcomes.of_counts(2000, 1300))  # 65% vs 80%
    outcome, world = _drive(lambda split, look: _live(split, worse))
    assert not outcome.promote and world.recorded == [("shadow", "advance"), (0.05, "abort")]
    assert "challenger worse" in outcome.reason and "5% of traffic" in outcome.reason


def test_a_step_waits_for_evidence_then_passes_and_the_looks_are_published():
    few = VersionLive(requests=50, outcomes=Outcomes.of_counts(10, 8))
    enough = VersionLive(requests=400, outcomes=Outcomes.of_counts(300, 240))
    outcome, world = _drive(lambda split, look: _live(split, few if look < 3 else enough), steps=(0.25,))
    assert outcome.promote and outcome.looks == 3 and world.recorded == [(0.25, "promote")]
    waiting = [p.last_look["verdict"]["action"] for p in world.published if p.last_look]
    assert waiting == ["continue", "continue"]
    assert world.clock - datetime(2026, 12, 2, tzinfo=UTC) == timedelta(seconds=2 * POLICY.poll_seconds)


def test_an_erroring_challenger_is_aborted_in_shadow_before_any_caller_sees_it():
    erroring = VersionLive(requests=300, errors=60, p99_ms=20.0)
    outcome, world = _drive(lambda split, look: _live(split, erroring))
    assert not outcome.promote and world.recorded == [("shadow", "abort")]
    assert "error rate" in outcome.reason


def _looked_split() -> TrafficSplit:
    """A split as the rollout flow publishes it after a look: every field the tag can hold."""
    split = start_split("churn", "7", "6", ["shadow", 0.1], datetime(2026, 12, 2, tzinfo=UTC))
    split = split.at_step(1, "2026-12-02T00:05:00+00:00")
    evidence = _step(0.1, HEALTHY, shadow=ShadowLive(rows=500, agreement=0.97, score_distance=0.02))
    look = judge_step(evidence, POLICY, last=True)
    return split.with_look({"at": "2026-12-02T00:06:00+00:00", "verdict": look.to_dict(), "evidence": evidence.to_dict()})


def test_the_split_round_trips_through_its_tag_and_a_broken_tag_is_refused():
    split = _looked_split()
    assert split.last_look["verdict"]["sequential"] is not None
    again = TrafficSplit.from_tag(split.to_tag())
    assert again == split and again.challenger_share == 0.1 and again.last_step
    assert TrafficSplit.from_tag(None) is None
    for broken in ('{"version": "7"}', "[1, 2]", "not json",
                   split.to_tag().replace('"step_index": 1', '"step_index": 5')):
        with pytest.raises(ValueError, match="mlops.rollout"):
            TrafficSplit.from_tag(broken)


def _tag_with(path: str, value) -> str:
    """The tag of `_looked_split` with the field at a dotted `path` set to `value` (None: removed)."""
    raw = json.loads(_looked_split().to_tag())
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _REMOVED:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return json.dumps(raw)


_REMOVED = object()


@pytest.mark.parametrize(
    ("tag", "field"),
    [
        pytest.param("[" * 5000 + "]" * 5000, "nested too deep", id="nested-5000-deep"),
        pytest.param('{"a": ' * 3000 + "1" + "}" * 3000, "nested too deep", id="objects-3000-deep"),
        pytest.param("1" * 5000, "not JSON", id="integer-past-the-digit-limit"),
        pytest.param(" " * 100_001, "characters", id="huge"),
        pytest.param('"a split"', "tag:", id="a-string"),
        pytest.param("null", "tag:", id="null"),
        pytest.param(_tag_with("last_look.verdict.action", "promote-now"), "last_look.verdict.action", id="verdict-not-one"),
        pytest.param(_tag_with("last_look.verdict.action", ["abort"]), "last_look.verdict.action", id="verdict-a-list"),
        pytest.param(_tag_with("last_look.verdict", "abort"), "last_look.verdict", id="verdict-a-string"),
        pytest.param(_tag_with("last_look.evidence.challenger.p99_ms", "fast"), "p99_ms", id="string-for-latency"),
        pytest.param(_tag_with("last_look.evidence.champion", [1, 2]), "evidence.champion", id="list-for-live-numbers"),
        pytest.param(_tag_with("last_look.verdict.reasons", ["ok\n2026 forged line"]), "reasons.0", id="line-break-in-reason"),
        pytest.param(_tag_with("last_look.at", "yesterday"), "last_look.at", id="look-time-not-a-time"),
        pytest.param(_tag_with("step_index", "1"), "step_index", id="string-for-step-index"),
        pytest.param(_tag_with("step_index", True), "step_index", id="bool-for-step-index"),
        pytest.param(_tag_with("step_index", -1), "step_index", id="negative-step-index"),
        pytest.param(_tag_with("steps.1", "0.1"), "steps.1", id="string-for-share"),
        pytest.param(_tag_with("steps.1", 1.5), "steps.1", id="share-above-1"),
        pytest.param(_tag_with("steps.1", 0), "steps.1", id="share-0"),
        pytest.param(_tag_with("steps.1", float("nan")), "steps.1", id="share-nan"),
        pytest.param(_tag_with("steps.1", float("inf")), "steps.1", id="share-inf"),
        pytest.param(_tag_with("steps.1", [0.1]), "steps.1", id="list-for-share"),
        pytest.param(_tag_with("steps", []), "steps", id="no-steps"),
        pytest.param(_tag_with("steps", [0.5, 0.1]), "steps", id="falling-shares"),
        pytest.param(_tag_with("steps", "shadow"), "steps", id="string-for-steps"),
        pytest.param(_tag_with("version", "7\u001b[2J"), "version", id="escape-codes-in-version"),
        pytest.param(_tag_with("version", "\u001b[31m7"), "version", id="escape-code-first"),
        pytest.param(_tag_with("version", "7\n"), "version", id="trailing-newline-in-version"),
        pytest.param(_tag_with("version", "0"), "version", id="version-0"),
        pytest.param(_tag_with("version", "-3"), "version", id="negative-version"),
        pytest.param(_tag_with("version", "1.5"), "version", id="fractional-version"),
        pytest.param(_tag_with("version", 7), "version", id="number-for-version"),
        pytest.param(_tag_with("champion_version", "v6"), "champion_version", id="champion-version-not-a-number"),
        pytest.param(_tag_with("started_at", "soon"), "started_at", id="start-not-a-time"),
        pytest.param(_tag_with("model_name", "churn\r\nforged"), "model_name", id="line-break-in-name"),
        pytest.param(_tag_with("challenger_weight", 0.5), "challenger_weight", id="unknown-key"),
        pytest.param(_tag_with("last_look.evidence.extra", {"x": 1}), "evidence.extra", id="unknown-nested-key"),
        pytest.param(_tag_with("version", _REMOVED), "version", id="missing-version"),
    ],
)
def test_a_tag_that_is_not_a_split_is_one_broken_split_line_naming_the_field(tag, field):
    with pytest.raises(BrokenSplit) as caught:
        TrafficSplit.from_tag(tag)
    message = str(caught.value)
    assert message.startswith(f"tag {ROLLOUT_TAG} is not a traffic split: ") and field in message
    assert message.isprintable() and len(message) < 400
    assert isinstance(caught.value, ValueError) and caught.value.exit_code == 2


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _mutated_tags() -> st.SearchStrategy[str]:
    """A valid tag with one field, anywhere in it, replaced by arbitrary JSON."""
    raw = json.loads(_looked_split().to_tag())

    def paths(node, prefix=()):
        yield prefix
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            yield from paths(child, (*prefix, key))

    def replaced(path, value):
        copy = json.loads(json.dumps(raw))
        if not path:
            return json.dumps(value)
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(copy)

    return st.builds(replaced, st.sampled_from(list(paths(raw))), _JSON)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    _JSON.map(json.dumps),
    st.integers(1, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 20_000).map(lambda depth: '{"k":' * depth + "0" + "}" * depth),
    _mutated_tags(),
))
def test_from_tag_answers_a_split_none_or_broken_split_for_any_text(text):
    try:
        split = TrafficSplit.from_tag(text)
    except BrokenSplit as err:
        assert str(err).isprintable()
        return
    if split is not None:  # what it accepts, every reader of the split can use
        assert split.challenger_share == 0.0 or 0.0 < split.challenger_share <= 1.0
        assert split.version.isdigit() and split.describe_step()
        render_status({"model_name": "churn", "active": True, "rollout_started_at": split.started_at,
                       "split": split.to_dict(), "steps": []})


def test_rollout_status_of_a_broken_tag_is_one_line_naming_the_model():
    class Registry:
        def rollout_split(self, name):
            return TrafficSplit.from_tag("[" * 5000 + "]" * 5000)

    with pytest.raises(BrokenSplit, match="^model churn: tag mlops.rollout is not a traffic split: nested too deep; "
                                          "serving routes to the champion only$"):
        rollout_status(Registry(), "churn")


# -- live evidence from the log --------------------------------------------------------------


def _log(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "row", "model_version", "route", "prediction", "probabilities", "label"])


def test_outcomes_count_each_versions_answered_rows_and_never_its_shadow_scorings():
    labelled = _log([
        ("a", 0, "1", "champion", "yes", [0.2, 0.8], "yes"),
        ("b", 0, "1", "champion", "no", [0.9, 0.1], "yes"),
        ("a", 0, "2", "shadow", "no", [0.6, 0.4], "yes"),
        ("c", 0, "2", "canary", "yes", [0.3, 0.7], "yes"),
    ])
    assert version_outcomes(labelled, "1", "classification") == Outcomes.of([1.0, 0.0])
    assert version_outcomes(labelled, "2", "classification") == Outcomes.of([1.0])
    regression = _log([("a", 0, "1", "champion", 3.0, None, 1.0)])
    assert version_outcomes(regression, "1", "regression") == Outcomes.of([-4.0])


def test_shadow_evidence_pairs_each_shadow_scoring_with_the_answer_the_caller_got():
    log = _log([
        ("a", 0, "1", "champion", "yes", [0.2, 0.8], None),
        ("a", 0, "2", "shadow", "no", [0.6, 0.4], None),
        ("b", 0, "1", "champion", "no", [0.9, 0.1], None),
        ("b", 0, "2", "shadow", "no", [0.8, 0.2], None),
        ("c", 0, "1", "champion", "no", [0.9, 0.1], None),  # not shadowed (yet): not a pair
    ])
    live = shadow_live(log, "2", "classification")
    assert live.rows == 2 and live.agreement == 0.5
    assert live.score_distance == pytest.approx(0.5)
    assert shadow_live(log.iloc[0:0], "2", "classification").rows == 0


def test_the_status_shows_the_step_the_share_and_both_versions_live_numbers():
    world = FakeWorld(lambda split, look: _live(split, HEALTHY))
    split = start_split("churn", "7", "6", ["shadow", 0.25], world.now()).at_step(1, "2026-12-02T00:05:00+00:00")
    look = judge_step(_live(split, HEALTHY), POLICY, last=True)
    split = split.with_look({"at": "2026-12-02T00:06:00+00:00", "verdict": look.to_dict(),
                             "evidence": _live(split, HEALTHY).to_dict()})
    text = render_status({"model_name": "churn", "active": True, "rollout_started_at": split.started_at,
                          "split": split.to_dict(), "steps": []})
    assert "rolling out v7 against champion v6, step 2 of 2: 25% of traffic" in text
    assert "challenger  5000 requests, 0 errors, p99 20 ms, labelled 2000" in text
    assert render_status({"model_name": "churn", "active": False, "rollout_started_at": None, "split": None,
                          "steps": []}) == "churn: no rollout has run"
