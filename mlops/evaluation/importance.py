"""Permutation importance of the raw feature columns on a seeded holdout sample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from mlops.contract import DataContract
from mlops.metrics import DECIMALS


def sample_positions(rows: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """At most `limit` of `rows` positions, drawn without replacement and kept in order."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(rng.choice(rows, size=limit, replace=False))


def importance_with_spread(
    pipeline: Pipeline,
    features: pd.DataFrame,
    truth: np.ndarray,
    contract: DataContract,
    seed: int,
    rows: int,
) -> dict[str, tuple[float, float]]:
    """(mean, standard deviation over the repeats) of the score drop per raw feature, largest mean first.

    The spread is what the model card shows next to the mean: a drop within it is indistinguishable
    from shuffling noise.
    """
    used = set(contract.numeric_features) | set(contract.categorical_features)
    columns = [name for name in contract.feature_names if name in used]
    positions = sample_positions(len(features), rows, np.random.default_rng(seed))
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
    pairs = zip(columns, result.importances_mean, result.importances_std, strict=True)
    ranked = sorted(
        ((n, float(m), float(s)) for n, m, s in pairs if math.isfinite(m)), key=lambda item: -item[1]
    )
    return {name: (round(mean, DECIMALS), round(std, DECIMALS)) for name, mean, std in ranked}
