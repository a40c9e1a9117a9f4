"""Batch scoring: cut a dataset into chunks and score each with a registered model.

Chunks are independent, so a flow can score them anywhere (in-process or on Dask workers) and
put them back together in order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract import DataContract
from mlops.training import feature_frame

PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"


def chunk_frame(frame: pd.DataFrame, chunk_rows: int) -> list[pd.DataFrame]:
    """Consecutive slices of at most `chunk_rows` rows, covering every row once, in order."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    return [frame.iloc[start : start + chunk_rows] for start in range(0, len(frame), chunk_rows)]


def score_chunk(model: Any, chunk: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The chunk's rows with the model's prediction (and per-class probabilities for classifiers)."""
    features = feature_frame(chunk, contract)
    out = chunk.reset_index(drop=True)
    out[PREDICTION_COLUMN] = np.asarray(model.predict(features))
    if hasattr(model, "predict_proba") and getattr(model, "classes_", None) is not None:
        probabilities = np.asarray(model.predict_proba(features))
        for position, label in enumerate(model.classes_):
            out[f"{PROBABILITY_PREFIX}{label}"] = probabilities[:, position]
    return out


def combine_chunks(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    if not chunks:
        raise ValueError("nothing to combine: no scored chunks")
    return pd.concat(chunks, ignore_index=True)


@dataclass(frozen=True)
class BatchScoreResult:
    """What a batch-scoring run read, which version scored it, and where the predictions went."""

    model_name: str
    model_version: str
    input_uri: str
    output_uri: str
    rows: int
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
