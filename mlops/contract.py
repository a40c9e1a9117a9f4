"""Data contract: what the training data looked like, stored with the model.

Later validations check new data against the contract of the champion, so a model is only ever
retrained or scored on data shaped like what it learned from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops.errors import DataError

Kind = Literal["numeric", "categorical", "boolean", "datetime"]
Role = Literal["feature", "target", "timestamp"]

# Above this many distinct values a text column is treated as free text, not a category set.
MAX_CATEGORIES = 200
# Numeric features must be finite and at most this large, in training and in serving alike:
# scaling squares every value, and far beyond it float64 overflows inside scikit-learn with an
# error that names no column. One home, so a row serving accepts is a row retraining can use.
MAX_ABS_VALUE = 1e100


@dataclass(frozen=True)
class ColumnContract:
    """Expected shape of one column."""

    name: str
    kind: Kind
    role: Role
    dtype: str
    null_fraction: float
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class DataContract:
    """Columns, types, null rates, ranges and category sets of the reference data."""

    columns: tuple[ColumnContract, ...]
    target: str
    timestamp: str | None
    row_count: int
    task: str
    classes: tuple[Any, ...] | None = None
    version: int = field(default=1)

    def column(self, name: str) -> ColumnContract:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def feature_columns(self) -> tuple[ColumnContract, ...]:
        return tuple(c for c in self.columns if c.role == "feature")

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("numeric", "boolean")]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind == "categorical"]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.feature_columns]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)

    @classmethod
    def from_json(cls, text: str) -> DataContract:
        raw = json.loads(text)
        cols = tuple(
            ColumnContract(**{**c, "categories": tuple(c["categories"]) if c["categories"] is not None else None})
            for c in raw.pop("columns")
        )
        classes = raw.pop("classes", None)
        return cls(columns=cols, classes=tuple(classes) if classes is not None else None, **raw)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def column_kind(series: pd.Series) -> Kind:
    """Classify a column the way the preprocessing and the checks will treat it."""
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "categorical"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def infer_contract(frame: pd.DataFrame, target: str, timestamp: str | None, task: str) -> DataContract:
    """Infer the contract from reference data; the target and timestamp must be present."""
    for role, name in (("target", target), ("timestamp", timestamp)):
        if name is not None and name not in frame.columns:
            raise DataError(f"{role} column '{name}' is not in the data (columns: {', '.join(map(str, frame.columns))})")
    blank = [position for position, name in enumerate(frame.columns, start=1) if not str(name).strip()]
    if blank:
        raise DataError(f"column {blank[0]} has an empty name: every column needs one")
    columns = []
    for name in frame.columns:
        series = frame[name]
        kind = column_kind(series)
        role: Role = "target" if name == target else "timestamp" if name == timestamp else "feature"
        nulls = float(series.isna().mean()) if len(series) else 0.0
        lo = hi = None
        cats = None
        if kind == "numeric":
            finite = series[np.isfinite(series.astype("float64"))]
            if len(finite):
                lo, hi = float(finite.min()), float(finite.max())
        elif kind == "categorical":
            values = series.dropna().unique()
            if len(values) <= MAX_CATEGORIES:
                cats = tuple(sorted((_plain(v) for v in values), key=str))
        columns.append(
            ColumnContract(
                name=str(name), kind=kind, role=role, dtype=str(series.dtype),
                null_fraction=round(nulls, 6), min=lo, max=hi, categories=cats,
            )
        )
    classes = None
    if task == "classification":
        classes = tuple(sorted((_plain(v) for v in frame[target].dropna().unique()), key=str))
    return DataContract(
        columns=tuple(columns), target=target, timestamp=timestamp, row_count=len(frame), task=task, classes=classes
    )
