"""The shared holdout: the rows champion and challenger are both scored on, and their metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import PipelineConfig, SplitConfig
from mlops.contract import DataContract
from mlops.errors import DataError
from mlops.evaluation import split_frame
from mlops.metrics import Predictions, predict, score_predictions
from mlops.training import feature_frame


def promotion_holdout(frame: pd.DataFrame, contract: DataContract, config: PipelineConfig) -> pd.DataFrame:
    """The rows both models are scored on.

    With `promotion.holdout_uri` the whole frame read from it; otherwise the latest `split.test_size`
    share of the training data (a time split when the contract names a timestamp, else the config's).
    """
    if config.promotion.holdout_uri:
        holdout = frame
    else:
        method = "time" if contract.timestamp and contract.timestamp in frame.columns else config.split.method
        split = SplitConfig(method=method, test_size=config.split.test_size)
        _, holdout = split_frame(frame, contract, split, config.model.seed)
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
