"""The shared holdout: the rows champion and challenger are both scored on, and their metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import PipelineConfig
from mlops.contract import DataContract
from mlops.errors import DataError
from mlops.evaluation import split_frame
from mlops.metrics import Predictions, predict, score_predictions
from mlops.training import feature_frame


def promotion_holdout(frame: pd.DataFrame, contract: DataContract, config: PipelineConfig) -> pd.DataFrame:
    """The rows both models are scored on.

    With `promotion.holdout_uri` the whole frame read from it; otherwise the rows the challenger's
    own evaluation held out: the configured `split` (method, test_size, seed) of the same data, so
    no row the challenger was fitted on is scored. Cutting the latest rows by time whenever there
    is a timestamp would not be: under a random split most of them are training rows, which favours
    the challenger (an identical model scored roc_auc 0.90 there against 0.76 on its own holdout).
    """
    if config.promotion.holdout_uri:
        holdout = frame
    else:
        _, holdout = split_frame(frame, contract, config.split, config.model.seed)
    if len(holdout) == 0:
        raise DataError("the promotion holdout is empty")
    if contract.target not in holdout.columns:
        raise DataError(f"target column '{contract.target}' is not in the promotion holdout")
    missing = int(holdout[contract.target].isna().sum())
    if missing:
        raise DataError(f"target column '{contract.target}' has {missing} missing values in the promotion holdout")
    return holdout


def predict_holdout(pipeline: Any, holdout: pd.DataFrame, contract: DataContract) -> Predictions:
    """Predict the holdout with the columns this model's own contract names, as serving does."""
    return predict(pipeline, feature_frame(holdout, contract), contract.task)


def holdout_metrics(task: str, truth: Sequence[Any] | np.ndarray, predictions: Predictions) -> dict[str, float]:
    """The same metrics training reports, on the shared holdout."""
    return score_predictions(task, truth, predictions)


def score_on_holdout(pipeline: Any, holdout: pd.DataFrame, contract: DataContract) -> tuple[Predictions, dict[str, float]]:
    """One version scored on the shared holdout with its own contract: predictions and metrics."""
    predictions = predict_holdout(pipeline, holdout, contract)
    return predictions, holdout_metrics(contract.task, holdout[contract.target].to_numpy(), predictions)
