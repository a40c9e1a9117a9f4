"""Holdout split, metrics, plots, feature importance and the quality gate.

What each metric means, which way is better and its bounds live in `mlops.metrics`; this module
applies them to the holdout and to the configured gates.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from mlops.config import GatesConfig, SplitConfig
from mlops.contract import DataContract
from mlops.errors import ConfigError, DataError, QualityGateFailed
from mlops.metrics import DECIMALS, METRICS, METRICS_BY_TASK, predict, score_predictions
from mlops.training import feature_frame

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_DPI = 100
# Scatter plots draw at most this many points: enough to see the shape, cheap to render.
MAX_PLOT_POINTS = 2000
MAX_IMPORTANCE_BARS = 30
MAX_PLOT_CLASSES = 30


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
        plots["confusion_matrix.png"] = _plot_confusion_matrix(truth, pred, classes)
        if len(classes) == 2 and score is not None:
            positive = truth == classes[1]
            # A curve needs both outcomes in the holdout; otherwise it is undefined and not drawn.
            if positive.any() and not positive.all():
                positive_score = score if score.ndim == 1 else score[:, 1]
                plots["roc_curve.png"] = _plot_roc(positive, positive_score)
                plots["pr_curve.png"] = _plot_pr(positive, positive_score)
    else:
        sample = _sample_positions(len(truth), MAX_PLOT_POINTS, rng)
        plots["residuals.png"] = _plot_residuals(truth[sample].astype(float), pred[sample])
        plots["predicted_vs_actual.png"] = _plot_predicted_vs_actual(truth[sample].astype(float), pred[sample])
    importance = _feature_importance(pipeline, features, truth, contract, seed, importance_rows)
    plots["feature_importance.png"] = _plot_importance(importance)
    return Evaluation(metrics=metrics, plots=plots, feature_importance=importance)


def _sample_positions(rows: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    if rows <= limit:
        return np.arange(rows)
    return np.sort(rng.choice(rows, size=limit, replace=False))


def _feature_importance(
    pipeline: Pipeline,
    features: pd.DataFrame,
    truth: np.ndarray,
    contract: DataContract,
    seed: int,
    rows: int,
) -> dict[str, float]:
    """Mean drop in score when one raw feature column is shuffled, largest first."""
    used = set(contract.numeric_features) | set(contract.categorical_features)
    columns = [name for name in contract.feature_names if name in used]
    positions = _sample_positions(len(features), rows, np.random.default_rng(seed))
    sample_x = features.iloc[positions][columns]
    sample_y = truth[positions]
    if contract.task == "regression":
        scoring = "r2"
    else:
        classes = list(pipeline.classes_)
        has_score = hasattr(pipeline, "predict_proba") or hasattr(pipeline, "decision_function")
        both = len(classes) == 2 and len(set(sample_y.tolist())) == 2
        scoring = "roc_auc" if has_score and both else "accuracy"
    result = permutation_importance(
        pipeline, sample_x, sample_y, scoring=scoring, n_repeats=3, random_state=seed
    )
    means = {
        name: float(value) for name, value in zip(columns, result.importances_mean, strict=True)
    }
    ranked = sorted(
        ((n, v) for n, v in means.items() if math.isfinite(v)), key=lambda item: -item[1]
    )
    return {name: round(value, DECIMALS) for name, value in ranked}


def _new_figure(width: float = 5.0, height: float = 4.0) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global backend, nothing left open."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=PLOT_DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI)
    figure.clear()
    return buffer.getvalue()


def _plot_confusion_matrix(truth: np.ndarray, pred: np.ndarray, all_classes: list[Any]) -> bytes:
    # The figure grows with the classes and draws one label per cell: hundreds of classes took
    # minutes and ran out of memory. Past MAX_PLOT_CLASSES only the most frequent true classes are drawn.
    classes = _most_frequent(truth, all_classes, MAX_PLOT_CLASSES)
    counts = confusion_matrix(truth, pred, labels=classes)
    size = max(4.0, 0.6 * len(classes) + 2.5)
    figure = _new_figure(size, size * 0.85)
    ax = figure.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(c) for c in classes])
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        ax.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    shown = "" if len(classes) == len(all_classes) else f", {len(classes)} most frequent of {len(all_classes)} classes"
    ax.set_title(f"Confusion matrix (holdout{shown})")
    return _png(figure)


def _most_frequent(truth: np.ndarray, classes: list[Any], limit: int) -> list[Any]:
    """`classes` when there are at most `limit`; else the `limit` most frequent in `truth`, in class order."""
    if len(classes) <= limit:
        return classes
    frequency = pd.Series(truth).value_counts()
    ranked = sorted(range(len(classes)), key=lambda i: (-int(frequency.get(classes[i], 0)), i))
    return [classes[i] for i in sorted(ranked[:limit])]


def _plot_roc(positive: np.ndarray, score: np.ndarray) -> bytes:
    fpr, tpr, _ = roc_curve(positive, score)
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(positive, score):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (holdout)")
    ax.legend(loc="lower right")
    return _png(figure)


def _plot_pr(positive: np.ndarray, score: np.ndarray) -> bytes:
    precision, recall, _ = precision_recall_curve(positive, score)
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.step(
        recall, precision, where="post", label=f"AP {average_precision_score(positive, score):.3f}"
    )
    ax.axhline(positive.mean(), linestyle="--", color="grey", label="prevalence")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve (holdout)")
    ax.legend(loc="upper right")
    return _png(figure)


def _plot_residuals(truth: np.ndarray, pred: np.ndarray) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.scatter(pred, truth - pred, s=6, alpha=0.4)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title("Residuals (holdout)")
    return _png(figure)


def _plot_predicted_vs_actual(truth: np.ndarray, pred: np.ndarray) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.scatter(truth, pred, s=6, alpha=0.4)
    low, high = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (holdout)")
    return _png(figure)


def _plot_importance(importance: Mapping[str, float]) -> bytes:
    shown = list(importance.items())[:MAX_IMPORTANCE_BARS]
    figure = _new_figure(6.0, max(3.0, 0.3 * len(shown) + 1.2))
    ax = figure.add_subplot()
    names = [name for name, _ in reversed(shown)]
    values = [value for _, value in reversed(shown)]
    ax.barh(names, values)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("mean score drop when shuffled")
    ax.set_title("Permutation importance (holdout sample)")
    return _png(figure)


@dataclass(frozen=True)
class GateResult:
    """One bound of the quality gate checked against one holdout metric."""

    metric: str
    bound: str  # "min" or "max"
    threshold: float
    value: float | None
    passed: bool

    def describe(self) -> str:
        """One readable line, e.g. 'roc_auc 0.7712 < min 0.8'."""
        if self.value is None:
            return f"{self.metric} was not computed ({self.bound} {self.threshold:g})"
        shown = _format_value(self.value, self.threshold)
        if self.bound == "min":
            relation = ">=" if self.passed else "<"
        else:
            relation = "<=" if self.passed else ">"
        return f"{self.metric} {shown} {relation} {self.bound} {self.threshold:g}"


def _format_value(value: float, threshold: float) -> str:
    """Four decimals, or more when four would print a failing value equal to its threshold."""
    for digits in range(4, 11):
        text = f"{value:.{digits}f}"
        if value == threshold or float(text) != threshold:
            return text
    return repr(value)


def validate_gates(gates: GatesConfig, task: str) -> None:
    """Refuse gates on unknown metrics or thresholds no model could meet, naming the config key."""
    known = METRICS_BY_TASK.get(task)
    if known is None:
        raise ConfigError(
            f"model.task: unknown task '{task}' (known: {', '.join(METRICS_BY_TASK)})"
        )
    for bound, thresholds in (("min", gates.min_metrics), ("max", gates.max_metrics)):
        for name, threshold in thresholds.items():
            key = f"gates.{bound}_metrics.{name}"
            if name not in known:
                raise ConfigError(f"{key}: unknown metric for {task} (known: {', '.join(known)})")
            if not math.isfinite(threshold):
                raise ConfigError(f"{key}: threshold must be a finite number, got {threshold}")
            spec = METRICS[name]
            if spec.minimum == 0 and threshold < 0:
                raise ConfigError(f"{key}: {name} is never negative, got {threshold:g}")
            if spec.maximum == 1 and threshold > 1:
                raise ConfigError(
                    f"{key}: {name} is at most 1 (a fraction, not a percentage), got {threshold:g}"
                )
    for name in gates.min_metrics.keys() & gates.max_metrics.keys():
        low, high = gates.min_metrics[name], gates.max_metrics[name]
        if low > high:
            raise ConfigError(
                f"gates.min_metrics.{name}: {low:g} is above gates.max_metrics.{name} {high:g}"
            )


def check_gates(metrics: Mapping[str, float], gates: GatesConfig) -> tuple[GateResult, ...]:
    """Every configured bound against the metrics; a metric that was not computed fails its bound."""
    results = []
    for bound, thresholds in (("min", gates.min_metrics), ("max", gates.max_metrics)):
        for name, threshold in thresholds.items():
            value = metrics.get(name)
            if value is None or not math.isfinite(value):
                results.append(GateResult(name, bound, float(threshold), None, False))
                continue
            passed = value >= threshold if bound == "min" else value <= threshold
            results.append(GateResult(name, bound, float(threshold), float(value), passed))
    return tuple(results)


def enforce_gates(results: tuple[GateResult, ...]) -> None:
    """Raise QualityGateFailed naming every failed bound, so the model is not registered."""
    failed = [result.describe() for result in results if not result.passed]
    if failed:
        raise QualityGateFailed(f"quality gate failed: {'; '.join(failed)}", gate_results=results)
