"""The holdout: how the data is cut (random, stratified or by time) and what it says about a model.

Metrics come from `mlops.metrics` (the same function the promotion decision and the live check use);
plots and permutation importance are drawn on the same rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from mlops.config import SplitConfig
from mlops.contract import DataContract
from mlops.errors import DataError
from mlops.evaluation.importance import importance_with_spread, sample_positions
from mlops.evaluation.plots import (
    plot_confusion_matrix,
    plot_importance,
    plot_pr,
    plot_predicted_vs_actual,
    plot_residuals,
    plot_roc,
)
from mlops.metrics import predict, score_predictions
from mlops.training import feature_frame

# Scatter plots draw at most this many points: enough to see the shape, cheap to render.
MAX_PLOT_POINTS = 2000


def split_frame(
    frame: pd.DataFrame, contract: DataContract, split: SplitConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut (train, holdout): random (stratified for classification) or the latest rows by time."""
    rows = len(frame)
    # Same rounding as scikit-learn's train_test_split, so both methods cut the same share.
    n_test = math.ceil(split.test_size * rows)
    n_train = rows - n_test
    if n_train < 1 or n_test < 1:
        raise DataError(
            f"cannot split {rows} rows with test_size {split.test_size}: the train or holdout side would be empty"
        )
    if split.method == "time":
        train, holdout = _split_by_time(frame, contract, n_train)
    else:
        train, holdout = _split_random(frame, contract, n_test, seed)
    if contract.task == "classification":
        present = train[contract.target].dropna().unique()
        if len(present) < 2:
            only = present[0] if len(present) else "none"
            raise DataError(
                f"the train split holds a single class of '{contract.target}' ({only}); a classifier needs two or more"
            )
    return train, holdout


def _split_random(
    frame: pd.DataFrame, contract: DataContract, n_test: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    stratify = None
    if contract.task == "classification":
        counts = frame[contract.target].value_counts(dropna=False)
        n_train = len(frame) - n_test
        # train_test_split refuses to stratify a class with one row, or a side smaller than the class count.
        if counts.min() >= 2 and min(n_test, n_train) >= len(counts):
            stratify = frame[contract.target]
    train, holdout = train_test_split(frame, test_size=n_test, random_state=seed, stratify=stratify)
    return train, holdout


def _split_by_time(
    frame: pd.DataFrame, contract: DataContract, n_train: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    name = contract.timestamp
    if name is None:
        raise DataError("a time split needs a timestamp column, and the data contract names none")
    if name not in frame.columns:
        raise DataError(
            f"a time split needs the timestamp column '{name}', which is not in the data"
        )
    stamps = frame[name]
    if not (pd.api.types.is_datetime64_any_dtype(stamps) or pd.api.types.is_numeric_dtype(stamps)):
        try:
            stamps = pd.to_datetime(stamps)
        except (ValueError, TypeError) as err:
            raise DataError(f"timestamp column '{name}' cannot be read as dates: {err}") from None
    missing = int(stamps.isna().sum())
    if missing:
        raise DataError(
            f"timestamp column '{name}' has {missing} missing values; a time split needs every row dated"
        )
    ordered = stamps.reset_index(drop=True).sort_values(kind="stable")
    boundary = ordered.iloc[n_train]
    # Rows sharing the boundary timestamp all go to the holdout, so train is strictly earlier.
    cut = int((ordered < boundary).sum())
    if cut == 0:
        raise DataError(
            f"cannot split by time: the train side would be empty (the earliest rows share the timestamp {boundary})"
        )
    positions = ordered.index.to_numpy()
    return frame.iloc[positions[:cut]], frame.iloc[positions[cut:]]


@dataclass(frozen=True)
class Evaluation:
    """What the holdout says about a fitted pipeline: metrics, PNG plots, permutation importance."""

    metrics: dict[str, float]
    plots: dict[str, bytes]
    feature_importance: dict[str, float]
    # Standard deviation of each feature's score drop over the permutation repeats (the model card's spread).
    importance_spread: dict[str, float] = field(default_factory=dict)


def evaluate_model(
    pipeline: Pipeline,
    holdout: pd.DataFrame,
    contract: DataContract,
    seed: int,
    importance_rows: int = 2000,
) -> Evaluation:
    """Score the pipeline on the holdout: metrics, plots and permutation importance of raw features.

    Importance is measured on a seeded sample of at most `importance_rows` rows (3 repeats), with
    roc_auc for binary classification, accuracy for multiclass and r2 for regression.
    """
    if importance_rows < 1:
        raise ValueError("importance_rows must be at least 1")
    features = feature_frame(holdout, contract)
    if len(features) == 0:
        raise DataError("the holdout is empty")
    if contract.target not in holdout.columns:
        raise DataError(f"target column '{contract.target}' is not in the holdout")
    truth = holdout[contract.target].to_numpy()
    if pd.isna(truth).any():
        raise DataError(f"target column '{contract.target}' has missing values in the holdout")
    predictions = predict(pipeline, features, contract.task)
    pred = predictions.pred
    metrics = score_predictions(contract.task, truth, predictions)
    plots: dict[str, bytes] = {}
    rng = np.random.default_rng(seed)
    if contract.task == "classification":
        classes = list(predictions.classes or ())
        score = predictions.score
        plots["confusion_matrix.png"] = plot_confusion_matrix(truth, pred, classes)
        if len(classes) == 2 and score is not None:
            positive = truth == classes[1]
            # A curve needs both outcomes in the holdout; otherwise it is undefined and not drawn.
            if positive.any() and not positive.all():
                positive_score = score if score.ndim == 1 else score[:, 1]
                plots["roc_curve.png"] = plot_roc(positive, positive_score)
                plots["pr_curve.png"] = plot_pr(positive, positive_score)
    else:
        sample = sample_positions(len(truth), MAX_PLOT_POINTS, rng)
        plots["residuals.png"] = plot_residuals(truth[sample].astype(float), pred[sample])
        plots["predicted_vs_actual.png"] = plot_predicted_vs_actual(truth[sample].astype(float), pred[sample])
    spread = importance_with_spread(pipeline, features, truth, contract, seed, importance_rows)
    importance = {name: mean for name, (mean, _) in spread.items()}
    plots["feature_importance.png"] = plot_importance(importance)
    return Evaluation(
        metrics=metrics, plots=plots, feature_importance=importance,
        importance_spread={name: std for name, (_, std) in spread.items()},
    )
