"""Metrics of one model on many resamples of the same rows at once (for the paired bootstrap).

A resample is a vector of draw counts per row; `weighted_metric` returns a function of a
(resamples x rows) count matrix giving the metric per resample (NaN where it is undefined). With all
counts 1 it equals `compute_metrics` on the rows (tested), so the bootstrap judges the very metric
the gates and the comparison use: the same score matrix, probability check and log loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mlops.errors import ConfigError
from mlops.metrics.point import Predictions, compute_metrics, row_log_losses, score_matrix

WeightedMetric = Callable[[np.ndarray], np.ndarray]


def weighted_metric(task: str, metric: str, truth: np.ndarray, p: Predictions) -> WeightedMetric:
    """A function of (resamples x rows) draw counts returning `metric` per resample (NaN: undefined)."""
    if task == "regression":
        return _weighted_regression(metric, truth.astype(float), p.pred.astype(float))
    labels = list(p.classes) if p.classes is not None else sorted(set(truth.tolist()) | set(p.pred.tolist()))
    pred = np.asarray(p.pred)
    if metric == "accuracy":
        correct = (pred == truth).astype(float)
        return lambda w: w @ correct / w.sum(axis=1)
    if metric in ("precision", "recall", "f1"):
        return _weighted_prf(metric, truth, pred, labels)
    proba = score_matrix(p.score, len(labels))
    if proba is None:
        return _undefined
    if metric == "log_loss":
        losses = row_log_losses(truth, proba, labels)
        if losses is None:
            return _undefined
        return lambda w: w @ losses / w.sum(axis=1)
    if metric == "roc_auc" and len(labels) == 2:
        return _weighted_binary_auc(truth == labels[1], proba[:, 1])
    if metric == "pr_auc":
        return _weighted_pr_auc(truth, proba, labels)
    return _weighted_by_resampling(metric, truth, pred, p.score, labels)


def _undefined(w: np.ndarray) -> np.ndarray:
    return np.full(w.shape[0], np.nan)


def _weighted_regression(metric: str, truth: np.ndarray, pred: np.ndarray) -> WeightedMetric:
    err = truth - pred
    if metric == "rmse":
        sq = err**2
        return lambda w: np.sqrt(w @ sq / w.sum(axis=1))
    if metric == "mae":
        ab = np.abs(err)
        return lambda w: w @ ab / w.sum(axis=1)
    if metric == "mape":
        if (truth == 0).any():  # compute_metrics leaves mape out when a target is 0
            return _undefined
        rel = np.abs(err) / np.abs(truth)
        return lambda w: w @ rel / w.sum(axis=1)
    if metric == "r2":
        sq, y, y2 = err**2, truth, truth**2

        def r2(w: np.ndarray) -> np.ndarray:
            total = w.sum(axis=1)
            mean = w @ y / total
            ss_tot = w @ y2 - total * mean**2
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(ss_tot > 1e-12 * np.maximum(1.0, w @ y2), 1.0 - (w @ sq) / ss_tot, np.nan)

        return r2
    raise ConfigError(f"promotion.primary_metric: unknown metric '{metric}' for regression")


def _weighted_prf(metric: str, truth: np.ndarray, pred: np.ndarray, labels: list[Any]) -> WeightedMetric:
    # Binary: the positive class (labels[1]); multiclass: macro average, as compute_metrics does.
    chosen = [labels[1]] if len(labels) == 2 else labels
    parts = [
        (((pred == c) & (truth == c)).astype(float), (pred == c).astype(float), (truth == c).astype(float))
        for c in chosen
    ]

    def value(w: np.ndarray) -> np.ndarray:
        per_class = []
        for tp_row, pp_row, ap_row in parts:
            tp, pp, ap = w @ tp_row, w @ pp_row, w @ ap_row
            with np.errstate(divide="ignore", invalid="ignore"):
                if metric == "precision":
                    out = np.where(pp > 0, tp / pp, 0.0)
                elif metric == "recall":
                    out = np.where(ap > 0, tp / ap, 0.0)
                else:
                    out = np.where(pp + ap > 0, 2 * tp / (pp + ap), 0.0)
            per_class.append(out)
        return np.mean(per_class, axis=0)

    return value


def _weighted_binary_auc(positive: np.ndarray, score: np.ndarray) -> WeightedMetric:
    """Weighted Mann-Whitney AUC, ties counting one half, for many weight vectors at once."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], positive[order].astype(float)
    neg = 1.0 - pos
    # For each sorted row: the first and last position of its group of tied scores.
    starts = np.searchsorted(s, s, side="left")
    ends = np.searchsorted(s, s, side="right") - 1

    def auc(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        cum_neg = np.cumsum(ws * neg, axis=1)
        padded = np.concatenate([np.zeros((ws.shape[0], 1)), cum_neg], axis=1)
        below = padded[:, starts]  # negatives strictly below each row's score
        tied = padded[:, ends + 1] - below  # negatives sharing each row's score
        numerator = ((ws * pos) * (below + 0.5 * tied)).sum(axis=1)
        n_pos, n_neg = ws @ pos, ws @ neg
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((n_pos > 0) & (n_neg > 0), numerator / (n_pos * n_neg), np.nan)

    return auc


def _weighted_average_precision(positive: np.ndarray, score: np.ndarray) -> WeightedMetric:
    """Weighted average precision (scikit-learn's step-wise definition), per weight vector."""
    order = np.argsort(-score, kind="stable")
    s, pos = score[order], positive[order].astype(float)
    # Last position of each group of tied scores: precision and recall are read only there.
    group_ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])

    def ap(w: np.ndarray) -> np.ndarray:
        ws = w[:, order]
        tp = np.cumsum(ws * pos, axis=1)[:, group_ends]
        seen = np.cumsum(ws, axis=1)[:, group_ends]
        total_pos = tp[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(seen > 0, tp / seen, 0.0)
            recall = tp / total_pos
        steps = np.diff(np.concatenate([np.zeros((w.shape[0], 1)), recall], axis=1), axis=1)
        out = (steps * precision).sum(axis=1)
        return np.where(total_pos[:, 0] > 0, out, np.nan)

    return ap


def _weighted_pr_auc(truth: np.ndarray, proba: np.ndarray, labels: list[Any]) -> WeightedMetric:
    if len(labels) == 2:
        positive = truth == labels[1]
        binary = _weighted_average_precision(positive, proba[:, 1])

        def value(w: np.ndarray) -> np.ndarray:
            # compute_metrics needs both outcomes among the rows drawn.
            n_pos = w @ positive.astype(float)
            return np.where((n_pos > 0) & (n_pos < w.sum(axis=1)), binary(w), np.nan)

        return value
    per_class = [_weighted_average_precision(truth == label, proba[:, i]) for i, label in enumerate(labels)]
    indicators = [(truth == label).astype(float) for label in labels]

    def macro(w: np.ndarray) -> np.ndarray:
        # compute_metrics needs every class present among the rows drawn.
        present = np.all([w @ ind > 0 for ind in indicators], axis=0)
        return np.where(present, np.mean([f(w) for f in per_class], axis=0), np.nan)

    return macro


def _weighted_by_resampling(
    metric: str, truth: np.ndarray, pred: np.ndarray, score: np.ndarray | None, labels: list[Any]
) -> WeightedMetric:
    """Slow path (one compute_metrics per resample): multiclass roc_auc."""

    def value(w: np.ndarray) -> np.ndarray:
        out = np.full(w.shape[0], np.nan)
        for i, weights in enumerate(w):
            keep = weights > 0
            # Repeating rows by their counts is exactly a resample; compute_metrics has no weights.
            idx = np.repeat(np.flatnonzero(keep), weights[keep].astype(int))
            got = compute_metrics("classification", truth[idx], pred[idx], None if score is None else score[idx], labels)
            out[i] = got.get(metric, np.nan)
        return out

    return value
