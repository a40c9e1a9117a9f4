"""Metrics of one model on a set of rows: the point computation every judge of a model uses.

Training's holdout evaluation and quality gate, the champion-vs-challenger comparison and the live
performance check all call `compute_metrics` (usually through `predict` + `score_predictions`), so
they cannot disagree on what a metric means. Every metric is a plain rounded float, and a metric that
is undefined for the data at hand (say roc_auc on rows with one class) is left out rather than
reported as NaN or a made-up value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from mlops.metrics.catalogue import DECIMALS, METRICS_BY_TASK


@dataclass(frozen=True)
class Predictions:
    """One model's output on some rows: labels/values, scores, and its class order."""

    pred: np.ndarray
    score: np.ndarray | None = None
    classes: tuple[Any, ...] | None = None


def class_scores(model: Any, features: pd.DataFrame) -> np.ndarray | None:
    """predict_proba when the estimator has it, else decision_function, else nothing."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(features), dtype=float)
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(features), dtype=float)
    return None


def predict(model: Any, features: pd.DataFrame, task: str) -> Predictions:
    """The model's predictions, scores and own class order on `features`: what every metric reads."""
    pred = np.asarray(model.predict(features))
    if task != "classification":
        return Predictions(pred=pred.astype(float))
    return Predictions(pred=pred, score=class_scores(model, features), classes=tuple(model.classes_))


def score_predictions(task: str, truth: Sequence[Any] | np.ndarray, predictions: Predictions) -> dict[str, float]:
    """`compute_metrics` of one model's `Predictions` against the true values."""
    return compute_metrics(task, truth, predictions.pred, predictions.score, predictions.classes)


def compute_metrics(
    task: str,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_score: ArrayLike | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Metrics by name; metrics undefined for these inputs are omitted.

    Classification: `y_score` is predict_proba (columns in `classes` order; for binary also just the
    positive-class column) or decision_function output. roc_auc/pr_auc need a score and both outcomes
    in `y_true` (every class for multiclass); log_loss needs probabilities. precision/recall are 0 when
    undefined (no predicted / actual positives), scikit-learn's zero_division=0 convention.
    Regression: r2 is omitted for fewer than two rows or a constant target, mape when a target is 0.
    """
    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if truth.shape[0] != pred.shape[0]:
        raise ValueError(f"y_true has {truth.shape[0]} rows but y_pred has {pred.shape[0]}")
    if truth.shape[0] == 0:
        return {}
    if task == "classification":
        labels = (
            list(classes) if classes is not None else list(np.unique(np.concatenate([truth, pred])))
        )
        raw = _classification_metrics(truth, pred, y_score, labels)
    elif task == "regression":
        raw = _regression_metrics(truth.astype(float), pred.astype(float))
    else:
        raise ValueError(f"unknown task '{task}' (known: {', '.join(METRICS_BY_TASK)})")
    return {
        name: round(float(value), DECIMALS) for name, value in raw.items() if math.isfinite(value)
    }


def _classification_metrics(
    truth: np.ndarray, pred: np.ndarray, score: ArrayLike | None, labels: list[Any]
) -> dict[str, float]:
    out: dict[str, float] = {"accuracy": float(accuracy_score(truth, pred))}
    binary = len(labels) == 2
    # labels=[positive] with average=None gives the positive class's numbers without requiring it be present.
    chosen = [labels[1]] if binary else labels
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, pred, labels=chosen, average=None if binary else "macro", zero_division=0.0
    )
    out["precision"], out["recall"], out["f1"] = (
        float(np.ravel(v)[0]) for v in (precision, recall, f1)
    )
    proba = score_matrix(score, len(labels))
    if proba is None:
        return out
    present = set(truth.tolist())
    if binary:
        positive = truth == labels[1]
        if present <= set(labels) and positive.any() and not positive.all():
            out["roc_auc"] = float(roc_auc_score(positive, proba[:, 1]))
            out["pr_auc"] = float(average_precision_score(positive, proba[:, 1]))
    elif present == set(labels):
        try:
            out["roc_auc"] = float(
                roc_auc_score(truth, proba, multi_class="ovr", average="macro", labels=labels)
            )
        except ValueError:
            pass  # decision_function scores: multiclass roc_auc is defined on probabilities only
        out["pr_auc"] = float(
            np.mean(
                [
                    average_precision_score(truth == label, proba[:, i])
                    for i, label in enumerate(labels)
                ]
            )
        )
    losses = row_log_losses(truth, proba, labels)
    if losses is not None:
        out["log_loss"] = float(np.mean(losses))
    return out


def score_matrix(score: ArrayLike | None, n_classes: int) -> np.ndarray | None:
    """Scores as a float (rows, classes) matrix; a binary 1-D score is the positive class's.

    None when there is no score or its shape does not fit the classes (no score-based metric then).
    """
    if score is None:
        return None
    score = np.asarray(score, dtype=float)
    if score.ndim == 1 and n_classes == 2:
        # For probabilities the complement is exact; for decision scores only column 1 is ever read.
        return np.column_stack([1.0 - score, score])
    if score.ndim == 2 and score.shape[1] == n_classes:
        return score
    return None


def is_probability(proba: np.ndarray) -> bool:
    """Whether every row is a probability distribution (decision scores are not)."""
    return bool(
        np.isfinite(proba).all()
        and (proba >= 0).all()
        and (proba <= 1).all()
        and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    )


def row_log_losses(truth: np.ndarray, proba: np.ndarray, labels: list[Any]) -> np.ndarray | None:
    """Each row's log loss; None when the scores are not probabilities or a true class is unknown."""
    column = {label: i for i, label in enumerate(labels)}
    if not is_probability(proba) or not set(truth.tolist()) <= column.keys():
        return None
    picked = proba[np.arange(len(truth)), [column[v] for v in truth.tolist()]]
    # Same clipping as scikit-learn: a confident miss costs a lot, not infinity.
    return -np.log(np.clip(picked, np.finfo(proba.dtype).eps, 1.0))


def _regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out = {
        "rmse": float(root_mean_squared_error(truth, pred)),
        "mae": float(mean_absolute_error(truth, pred)),
    }
    if len(truth) >= 2 and np.ptp(truth) > 0:
        out["r2"] = float(r2_score(truth, pred))
    if (truth != 0).all():
        out["mape"] = float(mean_absolute_percentage_error(truth, pred))
    return out
