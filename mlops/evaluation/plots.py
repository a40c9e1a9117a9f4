"""The holdout's plots as PNG bytes: confusion matrix, ROC and PR curves, residuals, importance.

Each figure is drawn on its own Agg canvas (no pyplot, no global backend) and sized so that many
classes or features stay bounded.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_DPI = 100
MAX_IMPORTANCE_BARS = 30
MAX_PLOT_CLASSES = 30


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


def plot_confusion_matrix(truth: np.ndarray, pred: np.ndarray, all_classes: list[Any]) -> bytes:
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


def plot_roc(positive: np.ndarray, score: np.ndarray) -> bytes:
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


def plot_pr(positive: np.ndarray, score: np.ndarray) -> bytes:
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


def plot_residuals(truth: np.ndarray, pred: np.ndarray) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.scatter(pred, truth - pred, s=6, alpha=0.4)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    ax.set_title("Residuals (holdout)")
    return _png(figure)


def plot_predicted_vs_actual(truth: np.ndarray, pred: np.ndarray) -> bytes:
    figure = _new_figure()
    ax = figure.add_subplot()
    ax.scatter(truth, pred, s=6, alpha=0.4)
    low, high = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (holdout)")
    return _png(figure)


def plot_importance(importance: Mapping[str, float]) -> bytes:
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


def plot_reliability(predicted: Sequence[float], observed: Sequence[float], counts: Sequence[int]) -> bytes:
    """Reliability curve: observed frequency against mean predicted probability per bin."""
    figure = _new_figure(5.0, 4.0)
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfectly calibrated")
    kept = [(p, o) for p, o, n in zip(predicted, observed, counts, strict=True) if n > 0]
    if kept:
        ax.plot([p for p, _ in kept], [o for _, o in kept], marker="o", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Reliability curve (holdout)")
    ax.legend(loc="upper left")
    return _png(figure)


def plot_partial_dependence(feature: str, grid: Sequence[Any], curves: Mapping[str, Sequence[float]], ylabel: str) -> bytes:
    """Average prediction as one feature moves over its grid (one line per class for a multiclass model)."""
    figure = _new_figure(5.0, 3.5)
    ax = figure.add_subplot()
    labels = [str(g) for g in grid]
    numeric = all(isinstance(g, int | float) for g in grid)
    for name, values in curves.items():
        if numeric:
            ax.plot(list(grid), list(values), label=name)
        else:
            ax.plot(labels, list(values), marker="o", label=name)
    if not numeric:
        ax.tick_params(axis="x", rotation=45)
    if len(curves) > 1:
        ax.legend(fontsize="small")
    ax.set_xlabel(feature)
    ax.set_ylabel(ylabel)
    ax.set_title(f"Partial dependence: {feature}")
    return _png(figure)
