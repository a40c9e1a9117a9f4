"""Training data for a retrain: the reference dataset plus labelled live traffic."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mlops.config import PipelineConfig


def combine_with_labelled(base: pd.DataFrame, labelled: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Append labelled prediction-log rows shaped like `base`; `base` itself when there are none."""
    if labelled is None or labelled.empty or "label" not in labelled.columns:
        return base
    rows = pd.DataFrame(index=labelled.index)
    for column in base.columns:
        if column == config.dataset.target:
            rows[column] = labelled["label"]
        elif column == config.dataset.timestamp:
            rows[column] = pd.to_datetime(labelled["timestamp"], utc=True).dt.tz_localize(None)
        elif column in labelled.columns:
            rows[column] = labelled[column]
        elif f"feature.{column}" in labelled.columns:
            rows[column] = labelled[f"feature.{column}"]
        else:
            return base  # the log lacks a column the model needs: train on the reference only
    rows = rows.astype(base.dtypes.to_dict(), errors="ignore")
    return pd.concat([base, rows], ignore_index=True)


def snapshot_uri(home: Path, model_name: str) -> str:
    """Where the assembled training data of one retrain is kept (its fingerprint is in lineage)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return str((home / "retrain" / f"{model_name}-{stamp}.parquet").resolve())
