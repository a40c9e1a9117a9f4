"""Partial dependence of the most important features: how the average prediction moves with each one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import partial_dependence

from mlops.contract import DataContract
from mlops.evaluation.importance import sample_positions
from mlops.metrics import DECIMALS

GRID_POINTS = 20


def partial_dependences(
    pipeline: Any, features: pd.DataFrame, contract: DataContract, names: list[str], seed: int, rows: int = 500
) -> list[dict[str, Any]]:
    """One curve per feature in `names` (per class for a multiclass model), on a seeded sample of rows.

    A feature scikit-learn cannot vary (all missing, one value) is left out rather than failing the card.
    """
    positions = sample_positions(len(features), rows, np.random.default_rng(seed))
    sample = features.iloc[positions]
    categorical = set(contract.categorical_features)
    curves = []
    for name in names:
        column = sample[name]
        if column.dropna().nunique() < 2:
            continue
        kind = "categorical" if name in categorical else "numeric"
        frame = sample
        if kind == "categorical":
            # scikit-learn's grid of a categorical column must not hold missing values.
            frame = sample[column.notna()]
        elif pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column):
            # scikit-learn refuses integer columns (its grid would round); the pipeline takes floats.
            frame = sample.astype({name: float})
        try:
            result = partial_dependence(
                pipeline, frame, [name], kind="average", grid_resolution=GRID_POINTS,
                categorical_features=[name] if kind == "categorical" else None,
            )
        except (ValueError, TypeError):
            continue
        grid = [_plain(v) for v in result["grid_values"][0]]
        average = np.atleast_2d(result["average"])
        if contract.task == "classification":
            classes = [str(c) for c in getattr(pipeline, "classes_", [])]
            # Binary: scikit-learn returns the positive class's curve only.
            labels = classes[1:] if average.shape[0] == 1 and len(classes) == 2 else classes[: average.shape[0]]
        else:
            labels = ["prediction"]
        series = {label: [round(float(v), DECIMALS) for v in values] for label, values in zip(labels, average, strict=False)}
        curves.append({"feature": name, "kind": kind, "grid": grid, "average": series})
    return curves


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return round(value, DECIMALS) if isinstance(value, float) else value
