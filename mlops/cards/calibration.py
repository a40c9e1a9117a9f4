"""Calibration of a classifier's probabilities: reliability curve, Brier score, expected calibration error.

A model can rank well (roc_auc) and still say 0.9 where 0.6 happens; whoever acts on the probability
needs to know. Binary models are judged on the positive class; multiclass ones on their top label.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.metrics import DECIMALS, Predictions
from mlops.metrics.point import is_probability, score_matrix

DEFAULT_BINS = 10


def calibration_summary(truth: np.ndarray, predictions: Predictions, bins: int = DEFAULT_BINS) -> dict[str, Any] | None:
    """Brier score, ECE and the reliability bins; None when the model gives no probabilities."""
    classes = list(predictions.classes or ())
    proba = score_matrix(predictions.score, len(classes)) if classes else None
    if proba is None or not is_probability(proba) or len(truth) == 0:
        return None
    onehot = np.column_stack([(truth == c).astype(float) for c in classes])
    if len(classes) == 2:
        confidence, outcome, target = proba[:, 1], onehot[:, 1], f"P({truth_name(classes[1])})"
        brier = float(np.mean((proba[:, 1] - onehot[:, 1]) ** 2))
    else:
        top = proba.argmax(axis=1)
        confidence = proba[np.arange(len(truth)), top]
        outcome = (np.asarray(classes, dtype=object)[top] == truth).astype(float)
        target = "top-label confidence"
        brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in [edges[i], edges[i+1]); a confidence of exactly 1 joins the last bin.
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    ece = 0.0
    for i in range(bins):
        mask = index == i
        count = int(mask.sum())
        predicted = float(confidence[mask].mean()) if count else None
        observed = float(outcome[mask].mean()) if count else None
        if count:
            ece += count / len(truth) * abs(observed - predicted)
        rows.append({
            "low": round(float(edges[i]), 4), "high": round(float(edges[i + 1]), 4), "count": count,
            "predicted": None if predicted is None else round(predicted, DECIMALS),
            "observed": None if observed is None else round(observed, DECIMALS),
        })
    return {"target": target, "brier": round(brier, DECIMALS), "ece": round(ece, DECIMALS), "bins": rows}


def truth_name(value: Any) -> str:
    return str(value.item() if hasattr(value, "item") else value)
