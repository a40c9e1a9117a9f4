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
    assert model._compiled is not None and model._trees is not None
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


@pytest.mark.parametrize("params", [
    {"max_iter": 30, "max_leaf_nodes": 63},  # deep trees
    {"max_iter": 20, "learning_rate": 0.3, "l2_regularization": 1.0},
])
def test_all_trees_at_once_give_sklearns_numbers_for_three_classes_and_missing_values(params):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlops.serving.compiled import compile_tree_ensemble

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)  # three classes
    X[rng.uniform(size=X.shape) < 0.1] = np.nan  # the trees learn where missing values go
    estimator = HistGradientBoostingClassifier(random_state=0, **params).fit(X, y)
    compiled = compile_tree_ensemble(estimator)
    assert compiled is not None and estimator.n_trees_per_iteration_ == 3
    probe = rng.normal(size=(200, 6))
    probe[rng.uniform(size=probe.shape) < 0.2] = np.nan
    np.testing.assert_array_equal(compiled.predict_proba(probe), estimator.predict_proba(probe))
    np.testing.assert_array_equal(compiled.predict(probe), estimator.predict(probe))


def test_native_categorical_splits_are_left_to_sklearn():
    from sklearn.ensemble import HistGradientBoostingRegressor

    from mlops.serving.compiled import compile_tree_ensemble

    rng = np.random.default_rng(1)
    X = np.column_stack([rng.integers(0, 5, 300), rng.normal(size=300)])
    estimator = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]).fit(X, X[:, 1] + X[:, 0])
    assert compile_tree_ensemble(estimator) is None
    assert compile_tree_ensemble(object()) is None
