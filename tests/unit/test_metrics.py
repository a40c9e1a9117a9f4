"""mlops.metrics: one table of names, directions and bounds; one point and one resampled computation.

The quality gate (evaluation), the champion-vs-challenger decision (promotion) and the live
performance check (monitoring) must give a model the very same number on the same rows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops import evaluation, monitoring, promotion
from mlops.config import GatesConfig, PromotionConfig, parse_config
from mlops.contract import infer_contract
from mlops.errors import ConfigError
from mlops.local.simulate import simulate_churn
from mlops.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    METRICS,
    METRICS_BY_TASK,
    REGRESSION_METRICS,
    Predictions,
    compute_metrics,
    higher_is_better,
    weighted_metric,
)
from mlops.training import fit_pipeline

# --- the table ---------------------------------------------------------------------------------


def test_names_directions_and_bounds_come_from_one_table():
    assert set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS) == set(METRICS)
    assert {name for name, spec in METRICS.items() if spec.task == "regression"} == set(METRICS_BY_TASK["regression"])
    assert LOWER_IS_BETTER == {"rmse", "mae", "mape", "log_loss"}
    assert LOWER_IS_BETTER == {name for name, spec in METRICS.items() if not spec.higher_is_better}
    # No other module keeps its own copy of the directions.
    assert not hasattr(promotion, "LOWER_IS_BETTER") and not hasattr(monitoring, "LOWER_IS_BETTER")


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_promotion_and_monitoring_read_the_direction_from_the_table(metric):
    spec = METRICS[metric]
    decision = promotion.decide_promotion(
        {metric: 0.5}, {metric: 0.4}, PromotionConfig(primary_metric=metric), GatesConfig(), task=spec.task
    )
    # 0.5 against 0.4 is better exactly when larger is better.
    assert decision.promote is spec.higher_is_better is higher_is_better(metric)
    direction = "higher" if spec.higher_is_better else "lower"
    assert f"({direction} is better)" in decision.checks[-1].detail


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_gate_bounds_come_from_the_table(metric):
    spec = METRICS[metric]
    below, above = GatesConfig(min_metrics={metric: -0.5}), GatesConfig(min_metrics={metric: 1.5})
    if spec.minimum == 0:
        with pytest.raises(ConfigError, match="is never negative"):
            evaluation.validate_gates(below, spec.task)
    else:
        evaluation.validate_gates(below, spec.task)
    if spec.maximum == 1:
        with pytest.raises(ConfigError, match="is at most 1"):
            evaluation.validate_gates(above, spec.task)
    else:
        evaluation.validate_gates(above, spec.task)


# --- one judge: the gate, the promotion comparison and the live check agree ----------------------


@pytest.fixture(scope="module")
def labelled_window() -> tuple[pd.DataFrame, pd.DataFrame]:
    # Labels 2 and 10: sorted as numbers (the model's class order) 2 comes first, as strings second,
    # so a judge that reads classes in another order than the model's scores columns disagrees.
    frame = simulate_churn(1500, seed=5)
    frame["churned"] = frame["churned"].map({0: 10, 1: 2})
    reference, current = frame.iloc[:1000], frame.iloc[1000:]
    return reference, current


@pytest.mark.parametrize(
    "estimator",
    ["sklearn.linear_model.LogisticRegression", "sklearn.linear_model.RidgeClassifier"],
    ids=["predict_proba", "decision_function"],
)
@pytest.mark.parametrize("metric", ["roc_auc", "f1", "accuracy"])
def test_gate_promotion_and_monitoring_give_identical_values(labelled_window, estimator, metric):
    reference, current = labelled_window
    contract = infer_contract(reference, "churned", "event_time", "classification")
    config = parse_config({
        "dataset": {"uri": "x.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {"name": "m", "estimator": estimator},
        "promotion": {"primary_metric": metric},
    })
    model = fit_pipeline(reference, contract, config.model)
    gate = evaluation.evaluate_model(model, current, contract, seed=0, importance_rows=50).metrics
    truth = current["churned"].to_numpy()
    compared = promotion.holdout_metrics("classification", truth, promotion.predict_holdout(model, current, contract))
    live = monitoring.check_window(reference, current, contract, model, config, gate).performance
    assert metric in gate and compared == gate
    assert live is not None and live.current == live.reference == gate[metric]


# --- the point computation -----------------------------------------------------------------------



def test_binary_metrics_match_hand_computation() -> None:
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 1, 1]
    score = [0.1, 0.85, 0.8, 0.9]
    metrics = compute_metrics("classification", y_true, y_pred, score, classes=[0, 1])
    expected_loss = -(math.log(0.9) + math.log(0.15) + math.log(0.8) + math.log(0.9)) / 4
    assert metrics == {
        "accuracy": 0.75,
        "precision": round(2 / 3, 6),
        "recall": 1.0,
        "f1": 0.8,
        # Positive/negative pairs ranked right: (0.8>0.1), (0.9>0.1), (0.9>0.85); wrong: (0.8<0.85).
        "roc_auc": 0.75,
        # Ranked: 0.9 pos (P=1, R=.5), 0.85 neg, 0.8 pos (P=2/3, R=1).
        "pr_auc": round(0.5 * 1 + 0.5 * 2 / 3, 6),
        "log_loss": round(expected_loss, 6),
    }
    assert all(type(value) is float for value in metrics.values())
    two_columns = np.column_stack([1 - np.array(score), score])
    assert compute_metrics("classification", y_true, y_pred, two_columns, classes=[0, 1]) == metrics


def test_binary_metrics_use_the_second_sorted_label_as_positive() -> None:
    metrics = compute_metrics(
        "classification", ["no", "yes", "yes"], ["yes", "yes", "no"], classes=["no", "yes"]
    )
    assert metrics == {"accuracy": round(1 / 3, 6), "precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_metrics_undefined_for_the_data_are_omitted_not_nan() -> None:
    one_class = compute_metrics(
        "classification", [1, 1, 1], [1, 0, 1], [0.9, 0.4, 0.7], classes=[0, 1]
    )
    assert set(one_class) == {"accuracy", "precision", "recall", "f1", "log_loss"}
    no_positive_predictions = compute_metrics("classification", [0, 1], [0, 0], classes=[0, 1])
    assert no_positive_predictions["precision"] == 0.0
    decision_scores = compute_metrics(
        "classification", [0, 1, 1], [0, 1, 0], [-2.0, 3.0, -0.5], classes=[0, 1]
    )
    assert decision_scores["roc_auc"] == 1.0 and "log_loss" not in decision_scores
    for metrics in (one_class, no_positive_predictions, decision_scores):
        assert all(math.isfinite(v) for v in metrics.values())


def test_multiclass_metrics_are_macro_averages() -> None:
    classes = ["a", "b", "c"]
    y_true = ["a", "b", "c", "a"]
    y_pred = ["a", "b", "b", "a"]
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.6, 0.3, 0.1]])
    metrics = compute_metrics("classification", y_true, y_pred, proba, classes=classes)
    assert metrics["accuracy"] == 0.75
    assert metrics["precision"] == 0.5  # a: 2/2, b: 1/2, c: nothing predicted -> 0
    assert metrics["recall"] == round(2 / 3, 6)  # a: 1, b: 1, c: 0
    assert metrics["f1"] == round((1 + 2 / 3 + 0) / 3, 6)
    # Every one-vs-rest ranking is perfect: the true class always has its column's top scores.
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0
    assert metrics["log_loss"] == round(
        -(math.log(0.8) + math.log(0.7) + math.log(0.4) + math.log(0.6)) / 4, 6
    )
    missing_class = compute_metrics(
        "classification", ["a", "b", "a"], ["a", "b", "b"], proba[:3], classes=classes
    )
    assert "roc_auc" not in missing_class and "pr_auc" not in missing_class


def test_regression_metrics_match_hand_computation() -> None:
    metrics = compute_metrics("regression", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0])
    assert metrics == {"rmse": 0.5, "mae": 0.25, "r2": 0.8, "mape": 0.0625}
    assert "mape" not in compute_metrics("regression", [0.0, 2.0], [1.0, 2.0])
    assert "r2" not in compute_metrics("regression", [3.0, 3.0], [2.0, 4.0])
    assert "r2" not in compute_metrics("regression", [3.0], [2.0])


def test_compute_metrics_refuses_unknown_task_and_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        compute_metrics("ranking", [1], [1])
    with pytest.raises(ValueError, match="y_true has 2 rows but y_pred has 1"):
        compute_metrics("regression", [1.0, 2.0], [1.0])


# --- the resampled computation -------------------------------------------------------------------


def _binary(rows: int, seed: int) -> tuple[np.ndarray, Predictions]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, rows)
    score = np.clip(truth * 0.5 + rng.normal(0.25, 0.2, rows), 0, 1)
    return truth, Predictions((score > 0.5).astype(int), np.column_stack([1 - score, score]), (0, 1))


def _weighted_equals_compute_metrics(task, truth, predictions):
    expected = compute_metrics(task, truth, predictions.pred, predictions.score, predictions.classes)
    ones = np.ones((1, len(truth)))
    for metric, value in expected.items():
        got = weighted_metric(task, metric, truth, predictions)(ones)[0]
        assert got == pytest.approx(value, abs=2e-6), metric
    return expected


def test_resampled_metrics_with_unit_weights_equal_the_point_metrics():
    rng = np.random.default_rng(2)
    truth, good = _binary(600, seed=0)
    assert len(_weighted_equals_compute_metrics("classification", truth, good)) == 7
    labels = rng.integers(0, 3, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    multi = Predictions(proba.argmax(axis=1), proba, (0, 1, 2))
    assert len(_weighted_equals_compute_metrics("classification", labels, multi)) == 7
    values = rng.normal(20, 4, 300)
    assert len(_weighted_equals_compute_metrics("regression", values, Predictions(values + rng.normal(0, 1, 300)))) == 4


def test_resampled_metrics_match_the_point_metrics_of_a_resample():
    truth, good = _binary(300, seed=1)
    rng = np.random.default_rng(4)
    index = rng.integers(0, 300, 300)
    weights = np.bincount(index, minlength=300).astype(float)[None, :]
    expected = compute_metrics("classification", truth[index], good.pred[index], good.score[index], [0, 1])
    for metric in ("roc_auc", "pr_auc", "accuracy", "log_loss", "f1"):
        got = weighted_metric("classification", metric, truth, good)(weights)[0]
        assert got == pytest.approx(expected[metric], abs=2e-6), metric


def test_resampled_log_loss_is_undefined_where_the_point_one_is():
    truth = np.array([0, 1, 1])
    decision = Predictions(np.array([0, 1, 0]), np.array([-2.0, 3.0, -0.5]), (0, 1))
    assert "log_loss" not in compute_metrics("classification", truth, decision.pred, decision.score, (0, 1))
    assert math.isnan(weighted_metric("classification", "log_loss", truth, decision)(np.ones((1, 3)))[0])
