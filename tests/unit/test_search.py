"""Hyperparameter search and batch-scoring helpers: pure functions on tiny inputs."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops import batch, search
from mlops.config import ModelConfig, SearchConfig, parse_config
from mlops.errors import ConfigError

MODEL = ModelConfig(name="m", estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 50})


def test_candidates_cover_the_grid_in_a_fixed_order():
    spec = SearchConfig(param_grid={"C": [0.1, 1.0], "fit_intercept": [True, False]})
    points = search.candidates(spec)
    assert len(points) == 4
    assert points == search.candidates(SearchConfig(param_grid={"fit_intercept": [True, False], "C": [0.1, 1.0]}))


def test_candidate_params_override_the_configured_ones():
    spec = search.candidate_model(MODEL, {"C": 0.5})
    assert spec.params == {"max_iter": 50, "C": 0.5} and spec.search is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SearchConfig(param_grid={"C": [1.0]}, scoring="accuracy_typo"), "unknown scikit-learn scorer 'accuracy_typo'"),
        (SearchConfig(param_grid={"Cc": [1.0]}), "model.search.param_grid: model.params.Cc: unknown parameter"),
        (SearchConfig(param_grid={"C": [-1.0]}), "invalid parameters for LogisticRegression"),
    ],
    ids=["scorer", "unknown-param", "bad-value"],
)
def test_validate_search_rejects_before_any_fit(spec, message):
    with pytest.raises(ConfigError, match=message):
        search.validate_search(spec, MODEL)


def test_validate_search_returns_candidates_and_default_scorer():
    spec = SearchConfig(param_grid={"C": [0.1, 1.0]})
    assert search.validate_search(spec, MODEL) == [{"C": 0.1}, {"C": 1.0}]
    assert search.scorer_name(spec, "classification") == "roc_auc"
    assert search.scorer_name(spec, "regression") == "neg_root_mean_squared_error"


def test_collect_restores_grid_order_and_ties_go_to_the_first():
    spec = SearchConfig(param_grid={"C": [1.0, 2.0, 3.0]})
    scores = [
        search.CandidateScore(2, {"C": 3.0}, 0.9, (0.9,)),
        search.CandidateScore(0, {"C": 1.0}, 0.8, (0.8,)),
        search.CandidateScore(1, {"C": 2.0}, 0.9, (0.9,)),
    ]
    result = search.collect(scores, spec, "classification")
    assert [c.index for c in result.candidates] == [0, 1, 2]
    assert result.best.index == 1
    assert result.to_dict()["best_params"] == {"C": 2.0}
    with pytest.raises(ValueError):
        search.collect([], spec, "classification")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"execution": {"task_runner": "spark"}}, "execution.task_runner"),
        ({"execution": {"workers": 2}}, "unknown key 'execution.workers'"),
        ({"model": {"name": "m", "search": {"param_grid": {"C": []}}}}, "no values to try for C"),
        ({"model": {"name": "m", "search": {"param_grid": {"C": [1]}, "cv": 1}}}, "model.search.cv"),
    ],
)
def test_config_rejects_bad_search_and_execution(section, message):
    raw = {"dataset": {"uri": "d.parquet", "target": "y"}, "model": {"name": "m"}, **section}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_chunks_cover_every_row_once_in_order():
    frame = pd.DataFrame({"x": range(10)})
    chunks = batch.chunk_frame(frame, 4)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert batch.combine_chunks(chunks)["x"].tolist() == list(range(10))
    with pytest.raises(ValueError):
        batch.chunk_frame(frame, 0)


def test_score_chunk_adds_prediction_and_class_probabilities():
    from sklearn.linear_model import LogisticRegression

    from mlops.contract import infer_contract

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 10, "y": [0, 0, 0, 1, 1, 1] * 10})
    contract = infer_contract(frame, "y", None, "classification")
    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    chunk = frame.iloc[6:12]
    scored = batch.score_chunk(model, chunk, contract)
    assert scored["prediction"].tolist() == [0, 0, 0, 1, 1, 1]
    assert list(scored.columns) == ["x", "y", "prediction", "probability_0", "probability_1"]
    assert (scored["probability_0"] + scored["probability_1"]).round(9).eq(1).all()
