"""A loaded model version and how it scores a list of validated records."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from mlops.contract import DataContract
from mlops.serving.compiled import compile_preprocessing, compile_tree_ensemble
from mlops.serving.payload import RecordValidator
from mlops.training import feature_frame


@dataclass(frozen=True)
class Scores:
    """Predictions for a batch of rows, with per-class probabilities for classifiers."""

    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None

    def slice(self, start: int, stop: int) -> Scores:
        probs = self.probabilities[start:stop] if self.probabilities is not None else None
        return Scores(self.predictions[start:stop], probs, self.classes)


class LoadedModel:
    """One registered version in memory: the fitted pipeline, its contract and its validator."""

    def __init__(self, name: str, version: str, model: Any, contract: DataContract) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.contract = contract
        self.validator = RecordValidator(contract)
        self.loaded_at = time.time()
        self.numeric_features = frozenset(contract.numeric_features)
        self._split = _split_pipeline(model)
        # The standard preprocessing straight from records with numpy (None: through the pipeline).
        self._compiled = compile_preprocessing(self._split[0]) if self._split[0] is not None else None
        # And a gradient-boosted model's trees walked all at once (None: sklearn predicts).
        self._trees = compile_tree_ensemble(self._split[1]) if self._compiled is not None else None
        classes = getattr(model, "classes_", None)
        # SVC-style models calibrate probabilities separately (Platt), so their argmax can differ.
        self._argmax_is_predict = "probability" not in getattr(self._split[1], "get_params", dict)()
        self.classes: list[Any] | None = (
            np.asarray(classes).tolist() if classes is not None and hasattr(model, "predict_proba") else None
        )

    def warm_up(self) -> Scores:
        """Score one typical row, so a broken artifact fails here and the first request is not slow."""
        row: dict[str, Any] = {}
        for col in self.contract.feature_columns:
            if col.kind == "numeric":
                row[col.name] = (col.min + col.max) / 2 if col.min is not None and col.max is not None else 0.0
            elif col.kind == "boolean":
                row[col.name] = False
            elif col.kind == "categorical" and col.categories:
                row[col.name] = col.categories[0]
            else:
                row[col.name] = None
        return self.score([row])

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Validated records as the feature frame the pipeline was trained on."""
        columns = {}
        for name in self.validator.names:
            values = [r[name] for r in records]
            # None becomes NaN in a float column, which the numeric imputer treats as missing.
            columns[name] = np.array(values, dtype="float64" if name in self.numeric_features else object)
        return feature_frame(pd.DataFrame(columns), self.contract)

    def score(self, records: list[dict[str, Any]]) -> Scores:
        """Predictions (and per-class probabilities for classifiers) in one pass over the pipeline."""
        head, estimator = self._split
        # Parameters were validated at fit time and every number was checked finite on the way
        # in, so sklearn's per-call re-checks are skipped (~8% of a small batch's cost).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            if self._compiled is not None:
                features = self._compiled(records)
            else:
                frame = self.frame(records)
                features = head.transform(frame) if head is not None else frame
            predictor = self._trees or estimator
            if self.classes is None:
                return Scores(np.asarray(predictor.predict(features)).tolist())
            probabilities = np.asarray(predictor.predict_proba(features))
        if self._argmax_is_predict:
            # sklearn's probabilistic classifiers predict the most probable class; deriving it
            # here saves a second pass through the trees, which costs as much as the first.
            predictions = np.asarray(estimator.classes_).take(probabilities.argmax(axis=1))
        else:
            predictions = np.asarray(estimator.predict(features))
        return Scores(predictions.tolist(), probabilities.tolist(), self.classes)


def _split_pipeline(model: Any) -> tuple[Any | None, Any]:
    """(preprocessing, final estimator) of a fitted sklearn Pipeline; (None, model) otherwise."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and len(model.steps) > 1:
        return model[:-1], model[-1]
    return None, model
