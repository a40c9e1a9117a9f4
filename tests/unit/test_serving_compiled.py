"""The numpy preprocessing of records gives the fitted pipeline's own numbers, or declines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.config import ModelConfig
from mlops.contract import infer_contract
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.serving.compiled import compile_preprocessing
from mlops.serving.scoring import LoadedModel
from mlops.training import fit_pipeline


def _fitted(frame: pd.DataFrame, target: str, task: str, estimator: str):
    contract = infer_contract(frame, target, "event_time", task)
    model = ModelConfig(name="m", task=task, estimator=estimator, params={"max_iter": 10})
    return fit_pipeline(frame, contract, model), contract


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def _awkward(records: list[dict]) -> list[dict]:
    """Missing numbers and categories, a category never seen in training, a boolean as a number."""
    rows = [dict(r) for r in records]
    rows[0]["monthly_charges"] = None
    rows[1]["contract"] = None
    rows[2]["plan"] = "platinum"
    rows[3]["total_charges"] = None
    rows[3]["region"] = None
    return rows


@pytest.mark.parametrize("simulate, target, task, estimator", [
    (simulate_churn, "churned", "classification", "sklearn.ensemble.HistGradientBoostingClassifier"),
    (simulate_spend, "monthly_spend", "regression", "sklearn.ensemble.HistGradientBoostingRegressor"),
])
def test_compiled_preprocessing_equals_the_pipeline_on_awkward_records(simulate, target, task, estimator):
    frame = simulate(600, seed=3)
    pipeline, contract = _fitted(frame, target, task, estimator)
    model = LoadedModel("m", "1", pipeline, contract)
    assert model._compiled is not None
    records = _awkward(_records(simulate(40, "strong", seed=4).drop(columns=[target, "event_time"])))
    head = pipeline[:-1]
    expected = head.transform(model.frame(records))
    np.testing.assert_array_equal(model._compiled(records), expected)
    # And the scores it gives are the pipeline's.
    scores = model.score(records)
    if task == "classification":
        np.testing.assert_array_equal(scores.probabilities, pipeline.predict_proba(model.frame(records)))
        assert scores.predictions == pipeline.predict(model.frame(records)).tolist()
    else:
        np.testing.assert_allclose(scores.predictions, pipeline.predict(model.frame(records)), rtol=0, atol=0)


def test_booleans_are_numbers_as_on_the_pandas_path():
    frame = simulate_churn(400, seed=5)
    frame["paperless"] = frame["age"] % 2 == 0
    pipeline, contract = _fitted(frame, "churned", "classification", "sklearn.ensemble.HistGradientBoostingClassifier")
    model = LoadedModel("m", "1", pipeline, contract)
    records = _records(frame.drop(columns=["churned", "event_time"]).head(10))
    assert isinstance(records[0]["paperless"], bool)
    np.testing.assert_array_equal(model._compiled(records), pipeline[:-1].transform(model.frame(records)))


def test_a_pipeline_of_another_shape_is_left_to_sklearn():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder, StandardScaler

    frame = simulate_churn(300, seed=6)
    head = Pipeline([("preprocess", ColumnTransformer([
        ("numeric", StandardScaler(), ["age", "tenure_months"]),
        ("categorical", OrdinalEncoder(), ["contract"]),
    ]))])
    Pipeline([*head.steps, ("estimator", HistGradientBoostingClassifier(max_iter=5))]).fit(frame, frame["churned"])
    assert compile_preprocessing(head) is None


def test_a_column_missing_in_all_training_rows_is_left_to_sklearn():
    frame = simulate_churn(300, seed=7)
    frame["total_charges"] = np.nan  # the imputer drops a column it never saw a value of
    pipeline, contract = _fitted(frame, "churned", "classification", "sklearn.ensemble.HistGradientBoostingClassifier")
    model = LoadedModel("m", "1", pipeline, contract)
    assert model._compiled is None
    records = _records(frame.drop(columns=["churned", "event_time"]).head(5))
    assert model.score(records).predictions == pipeline.predict(model.frame(records)).tolist()
