"""Unit tests for mlops.evaluation: splits, metrics, evaluation artifacts and the quality gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from mlops.config import GatesConfig, ModelConfig, SplitConfig
from mlops.contract import DataContract, infer_contract
from mlops.errors import ConfigError, DataError, QualityGateFailed
from mlops.evaluation import (
    Evaluation,
    GateResult,
    check_gates,
    enforce_gates,
    evaluate_model,
    split_frame,
    validate_gates,
)
from mlops.local.simulate import simulate_churn
from mlops.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS
from mlops.training import fit_pipeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# HistGradientBoosting's OpenMP threads spin-wait for each other on a loaded machine (conftest).
pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return simulate_churn(4000, seed=11)


@pytest.fixture(scope="module")
def contract(churn: pd.DataFrame) -> DataContract:
    return infer_contract(churn, "churned", "event_time", "classification")


def tiny(
    target: list[object], stamps: list[str] | None = None
) -> tuple[pd.DataFrame, DataContract]:
    """A small frame with one feature, the target and (optionally) a timestamp."""
    frame = pd.DataFrame({"x": np.arange(len(target), dtype=float), "y": target})
    if stamps is not None:
        frame["t"] = pd.to_datetime(stamps)
    return frame, infer_contract(frame, "y", "t" if stamps is not None else None, "classification")


# --- split_frame ------------------------------------------------------------------------------


def test_random_split_is_stratified_complete_and_seeded(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    train, holdout = split_frame(
        churn, contract, SplitConfig(method="random", test_size=0.2), seed=1
    )
    assert len(holdout) == 800 and len(train) == 3200
    assert set(train.index).isdisjoint(holdout.index)
    assert set(train.index) | set(holdout.index) == set(churn.index)
    overall = churn["churned"].sum()
    # Stratified: each side holds its exact share of churners (to the row).
    assert abs(holdout["churned"].sum() - overall * 0.2) <= 1
    again, _ = split_frame(churn, contract, SplitConfig(method="random", test_size=0.2), seed=1)
    other, _ = split_frame(churn, contract, SplitConfig(method="random", test_size=0.2), seed=2)
    assert list(again.index) == list(train.index)
    assert list(other.index) != list(train.index)


def test_random_split_skips_stratification_when_a_class_has_one_row() -> None:
    frame, contract = tiny([0, 1, 0, 1, 0, 1, 0, 1, 0, 2])
    train, holdout = split_frame(frame, contract, SplitConfig(test_size=0.3), seed=0)
    assert len(train) == 7 and len(holdout) == 3


def test_time_split_puts_every_train_row_before_every_holdout_row(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    shuffled = churn.sample(frac=1.0, random_state=3)
    train, holdout = split_frame(
        shuffled, contract, SplitConfig(method="time", test_size=0.25), seed=0
    )
    assert len(holdout) == 1000 and len(train) == 3000
    assert train["event_time"].max() < holdout["event_time"].min()
    assert holdout["event_time"].max() == churn["event_time"].max()


def test_time_split_sends_boundary_ties_to_the_holdout() -> None:
    stamps = ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-04", "2025-01-04"]
    frame, contract = tiny([0, 1, 0, 1, 0, 1], stamps)
    train, holdout = split_frame(frame, contract, SplitConfig(method="time", test_size=0.2), seed=0)
    # 20 % of 6 rows is 2, but the third row sharing the boundary date goes with them.
    assert len(holdout) == 3 and len(train) == 3
    assert train["t"].max() < holdout["t"].min()


@pytest.mark.parametrize(
    ("target", "stamps", "split", "message"),
    [
        (
            [0],
            None,
            SplitConfig(),
            "cannot split 1 rows with test_size 0.2: the train or holdout side would be empty",
        ),
        (
            [0, 0, 0, 0, 0, 0],
            None,
            SplitConfig(),
            "the train split holds a single class of 'y' (0)",
        ),
        (
            [0, 0, 0, 0, 1, 1],
            [f"2025-01-0{d}" for d in range(1, 7)],
            SplitConfig(method="time", test_size=0.3),
            "the train split holds a single class of 'y' (0)",
        ),
        (
            [0, 1, 0, 1],
            ["2025-01-01"] * 4,
            SplitConfig(method="time"),
            "cannot split by time: the train side would be empty",
        ),
        (
            [0, 1, 0, 1],
            None,
            SplitConfig(method="time"),
            "a time split needs a timestamp column, and the data contract names none",
        ),
    ],
)
def test_split_frame_refuses_unusable_splits(
    target: list[int], stamps: list[str] | None, split: SplitConfig, message: str
) -> None:
    frame, contract = tiny(target, stamps)
    with pytest.raises(DataError) as caught:
        split_frame(frame, contract, split, seed=0)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_time_split_refuses_absent_timestamp_column() -> None:
    frame, contract = tiny([0, 1, 0, 1, 0], [f"2025-01-0{d}" for d in range(1, 6)])
    with pytest.raises(
        DataError, match="a time split needs the timestamp column 't', which is not in the data"
    ):
        split_frame(frame.drop(columns=["t"]), contract, SplitConfig(method="time"), seed=0)


def test_time_split_refuses_missing_timestamps() -> None:
    frame, contract = tiny(
        [0, 1, 0, 1, 0], ["2025-01-01", "2025-01-02", None, "2025-01-04", "2025-01-05"]
    )
    with pytest.raises(DataError, match="timestamp column 't' has 1 missing values"):
        split_frame(frame, contract, SplitConfig(method="time"), seed=0)


# --- evaluate_model ---------------------------------------------------------------------------


def assert_pngs(evaluation: Evaluation, names: set[str]) -> None:
    assert set(evaluation.plots) == names
    for name, data in evaluation.plots.items():
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000, name


@pytest.fixture(scope="module")
def binary_evaluation(
    churn: pd.DataFrame, contract: DataContract
) -> tuple[Evaluation, Pipeline, pd.DataFrame]:
    train, holdout = split_frame(churn, contract, SplitConfig(), seed=0)
    pipeline = fit_pipeline(train, contract, ModelConfig(name="churn", params={"max_iter": 40}))
    return (
        evaluate_model(pipeline, holdout, contract, seed=0, importance_rows=500),
        pipeline,
        holdout,
    )


def test_evaluate_binary_classifier(
    binary_evaluation: tuple[Evaluation, Pipeline, pd.DataFrame], contract: DataContract
) -> None:
    evaluation, _, _ = binary_evaluation
    assert set(evaluation.metrics) == set(CLASSIFICATION_METRICS)
    assert 0.6 < evaluation.metrics["roc_auc"] <= 1.0
    assert_pngs(
        evaluation,
        {"confusion_matrix.png", "roc_curve.png", "pr_curve.png", "feature_importance.png"},
    )
    importance = evaluation.feature_importance
    assert set(importance) == set(contract.feature_names)
    assert list(importance.values()) == sorted(importance.values(), reverse=True)
    # The simulator drives churn mostly by tenure and contract type; region is pure noise.
    assert next(iter(importance)) in {"tenure_months", "contract"}
    assert importance["tenure_months"] > importance["region"]


def test_evaluate_model_is_repeatable_and_leaves_no_pyplot_figures(
    binary_evaluation: tuple[Evaluation, Pipeline, pd.DataFrame], contract: DataContract
) -> None:
    import matplotlib.pyplot as plt

    evaluation, pipeline, holdout = binary_evaluation
    again = evaluate_model(pipeline, holdout, contract, seed=0, importance_rows=500)
    assert again.feature_importance == evaluation.feature_importance
    assert again.metrics == evaluation.metrics
    assert plt.get_fignums() == []


def test_evaluate_regressor(churn: pd.DataFrame) -> None:
    frame = churn.drop(columns=["churned"])
    reg_contract = infer_contract(frame, "monthly_charges", "event_time", "regression")
    train, holdout = split_frame(frame, reg_contract, SplitConfig(method="time"), seed=0)
    model = ModelConfig(
        name="charges",
        task="regression",
        estimator="sklearn.ensemble.HistGradientBoostingRegressor",
        params={"max_iter": 40},
    )
    evaluation = evaluate_model(
        fit_pipeline(train, reg_contract, model), holdout, reg_contract, seed=0, importance_rows=300
    )
    assert set(evaluation.metrics) == set(REGRESSION_METRICS)
    assert evaluation.metrics["r2"] > 0.3
    assert_pngs(evaluation, {"residuals.png", "predicted_vs_actual.png", "feature_importance.png"})
    # total_charges / tenure recovers the monthly charge: nothing else should matter as much.
    assert max(evaluation.feature_importance, key=evaluation.feature_importance.__getitem__) in {
        "total_charges",
        "tenure_months",
    }


def test_evaluate_multiclass(churn: pd.DataFrame) -> None:
    mc_contract = infer_contract(churn, "plan", "event_time", "classification")
    train, holdout = split_frame(churn, mc_contract, SplitConfig(), seed=0)
    model = ModelConfig(name="plan", estimator="sklearn.linear_model.LogisticRegression")
    evaluation = evaluate_model(
        fit_pipeline(train, mc_contract, model), holdout, mc_contract, seed=0, importance_rows=300
    )
    assert set(evaluation.metrics) == set(CLASSIFICATION_METRICS)
    assert_pngs(evaluation, {"confusion_matrix.png", "feature_importance.png"})


def test_evaluate_model_refuses_bad_input(
    binary_evaluation: tuple[Evaluation, Pipeline, pd.DataFrame], contract: DataContract
) -> None:
    _, pipeline, holdout = binary_evaluation
    with pytest.raises(ValueError, match="importance_rows must be at least 1"):
        evaluate_model(pipeline, holdout, contract, seed=0, importance_rows=0)
    with pytest.raises(DataError, match="the holdout is empty"):
        evaluate_model(pipeline, holdout.head(0), contract, seed=0)


# --- gates ------------------------------------------------------------------------------------


def test_check_gates_min_and_max_bounds() -> None:
    gates = GatesConfig(min_metrics={"roc_auc": 0.8, "f1": 0.5}, max_metrics={"log_loss": 0.5})
    results = check_gates({"roc_auc": 0.7712, "f1": 0.5, "log_loss": 0.61}, gates)
    assert results == (
        GateResult("roc_auc", "min", 0.8, 0.7712, False),
        GateResult("f1", "min", 0.5, 0.5, True),
        GateResult("log_loss", "max", 0.5, 0.61, False),
    )
    assert [r.describe() for r in results] == [
        "roc_auc 0.7712 < min 0.8",
        "f1 0.5000 >= min 0.5",
        "log_loss 0.6100 > max 0.5",
    ]
    passing = check_gates({"roc_auc": 0.9, "log_loss": 0.4, "f1": 0.7}, gates)
    assert all(r.passed for r in passing)
    assert passing[2].describe() == "log_loss 0.4000 <= max 0.5"


def test_check_gates_fails_a_metric_that_was_not_computed() -> None:
    (result,) = check_gates({"accuracy": 0.9}, GatesConfig(min_metrics={"roc_auc": 0.7}))
    assert result.value is None and not result.passed
    assert result.describe() == "roc_auc was not computed (min 0.7)"


def test_describe_shows_enough_digits_to_see_the_miss() -> None:
    (result,) = check_gates({"roc_auc": 0.79999}, GatesConfig(min_metrics={"roc_auc": 0.8}))
    assert result.describe() == "roc_auc 0.79999 < min 0.8"


def test_enforce_gates_raises_one_line_naming_each_failure() -> None:
    gates = GatesConfig(
        min_metrics={"roc_auc": 0.8, "accuracy": 0.7}, max_metrics={"log_loss": 0.5}
    )
    results = check_gates({"roc_auc": 0.7712, "accuracy": 0.75, "log_loss": 0.61}, gates)
    with pytest.raises(QualityGateFailed) as caught:
        enforce_gates(results)
    assert (
        str(caught.value)
        == "quality gate failed: roc_auc 0.7712 < min 0.8; log_loss 0.6100 > max 0.5"
    )
    assert caught.value.gate_results == results
    assert caught.value.exit_code == 4


def test_enforce_gates_passes_a_model_on_its_bounds_and_refuses_one_just_beyond() -> None:
    gates = GatesConfig(min_metrics={"r2": 0.5}, max_metrics={"rmse": 5.0})
    on_bounds = check_gates({"r2": 0.5, "rmse": 5.0}, gates)
    assert [(g.metric, g.passed) for g in on_bounds] == [("r2", True), ("rmse", True)]
    assert enforce_gates(on_bounds) is None and enforce_gates(()) is None
    with pytest.raises(QualityGateFailed, match=r"quality gate failed: rmse 5\.0001 > max 5") as caught:
        enforce_gates(check_gates({"r2": 0.5, "rmse": 5.0001}, gates))
    assert "r2" not in str(caught.value)


@pytest.mark.parametrize(
    ("gates", "task", "message"),
    [
        (
            GatesConfig(min_metrics={"auc": 0.8}),
            "classification",
            "gates.min_metrics.auc: unknown metric for classification "
            "(known: accuracy, precision, recall, f1, roc_auc, pr_auc, log_loss)",
        ),
        (
            GatesConfig(max_metrics={"log_loss": 0.5}),
            "regression",
            "gates.max_metrics.log_loss: unknown metric for regression (known: rmse, mae, r2, mape)",
        ),
        (
            GatesConfig(max_metrics={"rmse": -1.0}),
            "regression",
            "gates.max_metrics.rmse: rmse is never negative, got -1",
        ),
        (
            GatesConfig(min_metrics={"accuracy": 80.0}),
            "classification",
            "gates.min_metrics.accuracy: accuracy is at most 1 (a fraction, not a percentage), got 80",
        ),
        (
            GatesConfig(min_metrics={"f1": float("nan")}),
            "classification",
            "gates.min_metrics.f1: threshold must be a finite number",
        ),
        (
            GatesConfig(min_metrics={"r2": 0.9}, max_metrics={"r2": 0.5}),
            "regression",
            "gates.min_metrics.r2: 0.9 is above gates.max_metrics.r2 0.5",
        ),
        (GatesConfig(), "clustering", "model.task: unknown task 'clustering'"),
    ],
)
def test_validate_gates_refuses(gates: GatesConfig, task: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_gates(gates, task)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("accepted", "beyond", "task", "message"),
    [
        # r2 may be negative (worse than predicting the mean), so a negative floor is legitimate; rmse is not.
        (GatesConfig(min_metrics={"r2": -0.5}, max_metrics={"rmse": 12.0, "mape": 1.5}),
         GatesConfig(min_metrics={"r2": -0.5}, max_metrics={"rmse": -0.5, "mape": 1.5}),
         "regression", "gates.max_metrics.rmse: rmse is never negative"),
        # A fraction may be gated at exactly 1, not above.
        (GatesConfig(min_metrics={"roc_auc": 0.7, "pr_auc": 1.0}, max_metrics={"log_loss": 0.6}),
         GatesConfig(min_metrics={"roc_auc": 0.7, "pr_auc": 1.01}, max_metrics={"log_loss": 0.6}),
         "classification", "gates.min_metrics.pr_auc: pr_auc is at most 1"),
    ],
)
def test_validate_gates_accepts_sensible_bounds_up_to_the_metric_s_range(
    accepted: GatesConfig, beyond: GatesConfig, task: str, message: str
) -> None:
    assert validate_gates(accepted, task) is None
    with pytest.raises(ConfigError, match=message):
        validate_gates(beyond, task)


def test_the_confusion_matrix_plot_stays_bounded_with_many_classes(churn: pd.DataFrame) -> None:
    import struct

    from mlops.evaluation.plots import MAX_PLOT_CLASSES

    many = churn.assign(plan=np.arange(len(churn)) % (2 * MAX_PLOT_CLASSES))
    mc_contract = infer_contract(many, "plan", "event_time", "classification")
    train, holdout = split_frame(many, mc_contract, SplitConfig(), seed=0)
    model = ModelConfig(name="plan", estimator="sklearn.tree.DecisionTreeClassifier", params={"max_depth": 3})
    evaluation = evaluate_model(fit_pipeline(train, mc_contract, model), holdout, mc_contract, seed=0, importance_rows=200)
    png = evaluation.plots["confusion_matrix.png"]
    width, height = struct.unpack(">II", png[16:24])
    # The figure of MAX_PLOT_CLASSES classes (0.6 in per class + 2.5 in, at 100 dpi), not of all of them.
    assert width <= (0.6 * MAX_PLOT_CLASSES + 2.5) * 100 and height <= width
