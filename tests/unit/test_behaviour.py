"""Behavioural tests (mlops/evaluation/behaviour.py) on tiny frames and transparent models: each
computation's passing and failing branch, the report's shape and the config checks before training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.config import BehaviourConfig
from mlops.contract import infer_contract
from mlops.errors import ConfigError, QualityGateFailed
from mlops.evaluation.behaviour import (
    MAX_FAILING_CASES,
    BehaviourTestFailed,
    enforce_behaviour,
    run_behaviour,
    typical_row,
    validate_behaviour,
)


class Classifier:
    """Churns when `x` > 0 (probability rises with x); `region` matters only when `uses_region`."""

    classes_ = np.array([0, 1])

    def __init__(self, uses_region: bool = False, sign: float = 1.0) -> None:
        self.uses_region, self.sign = uses_region, sign

    def _logit(self, X: pd.DataFrame) -> np.ndarray:
        logit = self.sign * X["x"].to_numpy(float)
        if self.uses_region:
            logit = logit + np.where(X["region"] == "north", 5.0, -5.0)
        return logit

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self._logit(X)))
        return np.c_[1.0 - p, p]

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self._logit(X) > 0).astype(int)


class Regressor:
    """Predicts 2 * x, plus 10 for the north when `uses_region`."""

    def __init__(self, uses_region: bool = False) -> None:
        self.uses_region = uses_region

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return 2.0 * X["x"].to_numpy(float) + (10.0 * (X["region"] == "north").to_numpy() if self.uses_region else 0.0)


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame({
        "x": rng.normal(0.0, 2.0, n),
        "region": rng.choice(["north", "south"], n),
        "y": rng.integers(0, 2, n),
    })


def behaviour(*tests: dict, **keys) -> BehaviourConfig:
    return BehaviourConfig.model_validate({"tests": list(tests), **keys})


def run(model, frame: pd.DataFrame, *tests: dict, task: str = "classification"):
    target = frame if task == "classification" else frame.assign(y=frame["x"] * 2.0)
    contract = infer_contract(target, "y", None, task)
    return run_behaviour(model, target, contract, behaviour(*tests), seed=0)


INVARIANT_REGION = {"name": "region-free", "kind": "invariance", "column": "region", "permute": True}


def test_invariance_passes_when_the_field_is_ignored(frame):
    report = run(Classifier(), frame, INVARIANT_REGION, {**INVARIANT_REGION, "name": "all-north", "permute": False, "value": "north"})
    assert report.passed
    assert [t.detail.split(":")[1].strip().split()[0] for t in report.tests] == ["0.00%", "0.00%"]
    assert all(t.failing_cases == [] for t in report.tests)


def test_invariance_fails_when_the_field_flips_predictions_and_keeps_at_most_ten_cases(frame):
    report = run(Classifier(uses_region=True), frame, {**INVARIANT_REGION, "permute": False, "value": "north"})
    [result] = report.tests
    assert not result.passed and not report.passed
    # Every south row flips to churn when set to north.
    south = int((frame["region"] == "south").sum())
    assert f"{south / len(frame):.2%}" in result.detail
    assert len(result.failing_cases) == min(south, MAX_FAILING_CASES)
    case = result.failing_cases[0]
    assert case["region"] == "south" and case["region (changed)"] == "north"
    assert (case["before"], case["after"]) == (0, 1)


def test_invariance_max_flip_rate_is_the_bound(frame):
    south = (frame["region"] == "south").mean()
    test = {**INVARIANT_REGION, "permute": False, "value": "north"}
    assert run(Classifier(uses_region=True), frame, {**test, "max_flip_rate": south}).passed
    assert not run(Classifier(uses_region=True), frame, {**test, "max_flip_rate": south - 0.01}).passed


def test_invariance_of_a_regressor_counts_moves_beyond_the_tolerance(frame):
    test = {**INVARIANT_REGION, "tolerance": 1.0}
    assert run(Regressor(), frame, test, task="regression").passed
    assert not run(Regressor(uses_region=True), frame, test, task="regression").passed
    assert run(Regressor(uses_region=True), frame, {**test, "tolerance": 10.5}, task="regression").passed


RAISE_X = {"name": "x-raises-churn", "kind": "directional", "column": "x", "delta": 1.0}


def test_directional_passes_when_the_probability_rises(frame):
    [result] = run(Classifier(), frame, RAISE_X).tests
    assert result.passed and "mean probability move +" in result.detail


def test_directional_fails_the_wrong_way_with_the_worst_rows_first(frame):
    [result] = run(Classifier(sign=-1.0), frame, RAISE_X).tests
    assert not result.passed and "mean probability move -" in result.detail
    moves = [case["after"] - case["before"] for case in result.failing_cases]
    assert 0 < len(moves) <= MAX_FAILING_CASES and all(m < 0 for m in moves)
    assert moves == sorted(moves)
    assert result.failing_cases[0]["x (changed)"] == pytest.approx(result.failing_cases[0]["x"] + 1.0)


def test_directional_decrease_and_tolerance(frame):
    assert run(Classifier(sign=-1.0), frame, {**RAISE_X, "direction": "decrease"}).passed
    assert not run(Classifier(), frame, {**RAISE_X, "direction": "decrease"}).passed
    # The move is below 1 on average for a probability: a tolerance of 1 accepts any.
    assert run(Classifier(), frame, {**RAISE_X, "direction": "decrease", "tolerance": 1.0}).passed


def test_directional_on_a_regressor_follows_the_output(frame):
    [up] = run(Regressor(), frame, RAISE_X, task="regression").tests
    assert up.passed and "mean output move +2.0000" in up.detail
    assert not run(Regressor(), frame, {**RAISE_X, "delta": -1.0}, task="regression").passed


def test_directional_positive_class_picks_the_followed_probability(frame):
    assert not run(Classifier(), frame, {**RAISE_X, "positive_class": 0}).passed
    with pytest.raises(ConfigError, match="positive_class 7 is not a class"):
        run(Classifier(), frame, {**RAISE_X, "positive_class": 7})


OBVIOUS = {"name": "obvious", "kind": "minimum", "cases": [{"row": {"x": 5.0}, "expected": 1}, {"row": {"x": -5.0}, "expected": 0}]}


def test_minimum_passes_and_fails_case_by_case(frame):
    [ok] = run(Classifier(), frame, OBVIOUS).tests
    assert ok.passed and ok.detail == "2 of 2 cases as expected"
    [bad] = run(Classifier(sign=-1.0), frame, OBVIOUS).tests
    assert not bad.passed and bad.detail == "0 of 2 cases as expected"
    assert bad.failing_cases == [{"x": 5.0, "expected": 1, "predicted": 0}, {"x": -5.0, "expected": 0, "predicted": 1}]


def test_minimum_fills_missing_features_with_the_typical_row(frame):
    contract = infer_contract(frame, "y", None, "classification")
    typical = typical_row(frame[contract.feature_names], contract)
    assert typical["x"] == pytest.approx(frame["x"].median())
    assert typical["region"] == frame["region"].mode().iloc[0]
    # region is not given: the typical one is used, and the north/south rule decides.
    case = {"name": "region", "kind": "minimum", "cases": [{"row": {"x": 0.0}, "expected": int(typical["region"] == "north")}]}
    assert run(Classifier(uses_region=True), frame, case).passed


def test_minimum_on_a_regressor_uses_the_tolerance(frame):
    test = {"name": "double", "kind": "minimum", "tolerance": 0.5, "cases": [{"row": {"x": 3.0}, "expected": 6.4}]}
    assert run(Regressor(), frame, test, task="regression").passed
    assert not run(Regressor(), frame, {**test, "tolerance": 0.3}, task="regression").passed


def test_report_schema_and_the_refusal_names_the_failed_test(frame):
    report = run(Classifier(sign=-1.0), frame, INVARIANT_REGION, RAISE_X)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["passed"] is False
    assert [(t["name"], t["kind"], t["passed"]) for t in payload["tests"]] == [
        ("region-free", "invariance", True), ("x-raises-churn", "directional", False)]
    assert set(payload["tests"][1]) == {"name", "kind", "passed", "detail", "failing_cases"}
    with pytest.raises(BehaviourTestFailed) as caught:
        enforce_behaviour(report)
    assert isinstance(caught.value, QualityGateFailed) and caught.value.exit_code == 4
    assert str(caught.value).startswith("behavioural test failed: 'x-raises-churn' (directional): x +1")
    assert "\n" not in str(caught.value)
    enforce_behaviour(run(Classifier(), frame, RAISE_X))  # passing: nothing raised


def test_max_rows_samples_the_holdout(frame):
    contract = infer_contract(frame, "y", None, "classification")
    report = run_behaviour(Classifier(), frame, contract, behaviour(INVARIANT_REGION, max_rows=10), seed=0)
    assert "of 10 predictions" in report.tests[0].detail


@pytest.mark.parametrize(
    ("test", "task", "message"),
    [
        ({**INVARIANT_REGION, "column": "colour"}, "classification",
         "behaviour.tests.0.column: unknown feature column 'colour' in test 'region-free' (features: x, region)"),
        ({**RAISE_X, "column": "y"}, "classification", "behaviour.tests.0.column: unknown feature column 'y'"),
        ({**RAISE_X, "column": "region"}, "classification", "behaviour.tests.0.column: test 'x-raises-churn' adds delta to 'region', which is not numeric"),
        (INVARIANT_REGION, "regression", "behaviour.tests.0.tolerance: test 'region-free' needs a tolerance for a regression model"),
        (OBVIOUS, "regression", "behaviour.tests.0.tolerance: test 'obvious' needs a tolerance"),
        ({**OBVIOUS, "cases": [{"row": {"age": 3}, "expected": 1}]}, "classification",
         "behaviour.tests.0.cases.0.row: unknown feature column 'age'"),
        ({**RAISE_X, "positive_class": 1}, "regression", "behaviour.tests.0.positive_class"),
    ],
)
def test_validate_refuses_naming_the_key(frame, test, task, message):
    with pytest.raises(ConfigError) as caught:
        validate_behaviour(behaviour(test), frame, ["x", "region"], task)
    assert str(caught.value).startswith(message)


def test_validate_accepts_good_tests(frame):
    validate_behaviour(behaviour(INVARIANT_REGION, RAISE_X, OBVIOUS), frame, ["x", "region"], "classification")
