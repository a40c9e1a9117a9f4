"""Slice metrics, the slice gates and the worst-slice promotion check, on tiny frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.config import EvaluationConfig, GatesConfig, PromotionConfig
from mlops.errors import ConfigError, DataError, QualityGateFailed
from mlops.evaluation import (
    SliceReport,
    SliceResult,
    bootstrap_intervals,
    check_slice_gates,
    compute_slices,
    enforce_slice_gates,
    validate_gates,
)
from mlops.metrics import Predictions
from mlops.promotion import decide_promotion


def _frame() -> tuple[pd.DataFrame, np.ndarray, Predictions]:
    """40 'good' rows predicted right, 40 'bad' rows half wrong, 5 'tiny' rows all wrong, 2 missing."""
    segment = ["good"] * 40 + ["bad"] * 40 + ["tiny"] * 5 + [None] * 2
    truth = np.array([0, 1] * 20 + [0, 1] * 20 + [1] * 5 + [0, 1])
    pred = truth.copy()
    pred[40:60] = 1 - pred[40:60]  # half of 'bad' wrong
    pred[80:85] = 0  # every 'tiny' row wrong
    frame = pd.DataFrame({"segment": segment, "y": truth})
    return frame, truth, Predictions(pred=pred, classes=(0, 1))


def _report(**evaluation) -> SliceReport:
    frame, truth, predictions = _frame()
    config = EvaluationConfig(**{"segments": ["segment"], "min_slice_rows": 30, "bootstrap_samples": 50, **evaluation})
    return compute_slices(frame, truth, predictions, "classification", config, ["accuracy"], seed=0)


def test_each_value_is_a_slice_with_its_count_metrics_and_interval():
    report = _report()
    by_value = {s.value: s for s in report.slices}
    assert set(by_value) == {"good", "bad", "tiny", "(missing)"}
    assert (by_value["good"].rows, by_value["bad"].rows, by_value["tiny"].rows) == (40, 40, 5)
    assert by_value["good"].metrics["accuracy"] == 1.0
    assert by_value["bad"].metrics["accuracy"] == 0.5
    low, high = by_value["bad"].intervals["accuracy"]
    assert low < 0.5 < high
    # Largest slices first within a segment.
    assert [s.rows for s in report.slices] == sorted((s.rows for s in report.slices), reverse=True)


def test_slices_below_the_minimum_are_reported_not_judged():
    report = _report()
    by_value = {s.value: s for s in report.slices}
    assert by_value["tiny"].judged is False and by_value["tiny"].metrics["accuracy"] == 0.0
    assert by_value["good"].judged and by_value["bad"].judged
    # The worst slice is the worst judged one: 'tiny' (accuracy 0) is not judged.
    assert report.worst("accuracy").value == "bad"
    results = check_slice_gates(report, GatesConfig(min_slice_metrics={"accuracy": 0.4}))
    assert all(r.passed for r in results)


def test_a_slice_below_its_bound_is_refused_naming_the_slice():
    report = _report()
    results = check_slice_gates(report, GatesConfig(min_slice_metrics={"accuracy": 0.6}))
    assert [r.passed for r in results] == [False]
    with pytest.raises(QualityGateFailed) as raised:
        enforce_slice_gates(results)
    message = str(raised.value)
    assert "segment=bad" in message and "0.6" in message and "\n" not in message
    assert raised.value.exit_code == 4


def test_an_error_metric_bound_is_a_ceiling():
    report = SliceReport(("r",), 1, (
        SliceResult("r", "a", 10, True, {"rmse": 2.0}), SliceResult("r", "b", 10, True, {"rmse": 5.0}),
    ))
    assert report.worst("rmse").value == "b"
    (result,) = check_slice_gates(report, GatesConfig(min_slice_metrics={"rmse": 4.0}))
    assert not result.passed and "r=b" in result.describe() and "> min_slice_metrics 4" in result.describe()
    (result,) = check_slice_gates(report, GatesConfig(min_slice_metrics={"rmse": 6.0}))
    assert result.passed


def test_a_gap_between_best_and_worst_slice_beyond_the_bound_is_refused():
    report = _report()
    (wide,) = check_slice_gates(report, GatesConfig(max_slice_gap={"accuracy": 0.3}))
    assert not wide.passed and wide.value == 0.5
    assert "segment=good and segment=bad" in wide.describe()
    (fine,) = check_slice_gates(report, GatesConfig(max_slice_gap={"accuracy": 0.5}))
    assert fine.passed


def test_no_judged_slice_means_nothing_to_judge():
    report = _report(min_slice_rows=1000)
    results = check_slice_gates(report, GatesConfig(min_slice_metrics={"accuracy": 0.99}, max_slice_gap={"accuracy": 0.0}))
    assert all(r.passed for r in results)


def test_a_segment_column_missing_from_the_holdout_is_named():
    frame, truth, predictions = _frame()
    config = EvaluationConfig(segments=["region"])
    with pytest.raises(DataError, match="'region'"):
        compute_slices(frame, truth, predictions, "classification", config, ["accuracy"], seed=0)


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        ({"min_slice_metrics": {"rmse": 1.0}}, "gates.min_slice_metrics.rmse: unknown metric"),
        ({"max_slice_gap": {"accuracy": -0.1}}, "gates.max_slice_gap.accuracy: a gap is never negative"),
    ],
)
def test_slice_gates_on_unknown_metrics_or_negative_gaps_are_config_errors(gates, message):
    with pytest.raises(ConfigError, match=message):
        validate_gates(GatesConfig(**gates), "classification")


def test_report_round_trips_through_its_dict():
    report = _report()
    assert SliceReport.from_dict(report.to_dict()) == report


def test_bootstrap_interval_brackets_the_point_value_and_is_seeded():
    truth = np.array([0, 1] * 50)
    pred = truth.copy()
    pred[:20] = 1 - pred[:20]
    predictions = Predictions(pred=pred, classes=(0, 1))
    first = bootstrap_intervals("classification", truth, predictions, ["accuracy"], 200, 0.9, seed=1)
    again = bootstrap_intervals("classification", truth, predictions, ["accuracy"], 200, 0.9, seed=1)
    low, high = first["accuracy"]
    assert first == again and low < 0.8 < high


def _slices(value_a: float, value_b: float) -> SliceReport:
    return SliceReport(("contract",), 1, (
        SliceResult("contract", "month-to-month", 50, True, {"roc_auc": value_a}),
        SliceResult("contract", "two-year", 50, True, {"roc_auc": value_b}),
    ))


def test_promotion_refuses_a_challenger_better_on_average_but_worse_on_its_worst_slice():
    policy = PromotionConfig(primary_metric="roc_auc", tolerance=0.01, compare_worst_slice=True)
    decision = decide_promotion(
        {"roc_auc": 0.85}, {"roc_auc": 0.80}, policy, GatesConfig(), task="classification",
        slice_reports=(_slices(0.90, 0.60), _slices(0.82, 0.75)),
    )
    assert not decision.promote
    assert "contract=two-year" in decision.reason and "worst slice" in decision.reason


def test_promotion_allows_a_worst_slice_within_tolerance():
    policy = PromotionConfig(primary_metric="roc_auc", tolerance=0.02, compare_worst_slice=True)
    decision = decide_promotion(
        {"roc_auc": 0.85}, {"roc_auc": 0.80}, policy, GatesConfig(), task="classification",
        slice_reports=(_slices(0.90, 0.74), _slices(0.82, 0.75)),
    )
    assert decision.promote, decision.reason
    assert any(c.name == "worst-slice:roc_auc" and c.passed for c in decision.checks)


def test_worst_slice_comparison_is_off_unless_asked():
    decision = decide_promotion(
        {"roc_auc": 0.85}, {"roc_auc": 0.80}, PromotionConfig(primary_metric="roc_auc"), GatesConfig(),
        task="classification", slice_reports=(_slices(0.90, 0.10), _slices(0.82, 0.75)),
    )
    assert decision.promote


@pytest.mark.parametrize(
    ("section", "value", "key"),
    [
        ("gates", {"min_slice_metrics": {"roc_auc": 0.7}}, "gates.min_slice_metrics"),
        ("gates", {"max_slice_gap": {"roc_auc": 0.1}}, "gates.max_slice_gap"),
        ("promotion", {"compare_worst_slice": True}, "promotion.compare_worst_slice"),
    ],
)
def test_a_slice_judge_without_segments_is_refused_naming_its_key(section, value, key):
    from mlops.config import parse_config

    raw = {"dataset": {"uri": "x.parquet", "target": "y"}, "model": {"name": "m"}, section: value}
    with pytest.raises(ConfigError, match=f"{key} needs evaluation.segments"):
        parse_config(raw)
    parse_config({**raw, "evaluation": {"segments": ["contract"]}})
