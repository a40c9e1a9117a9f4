"""The `batch-score` flow for each task type: the classifier's classes and probabilities, the regressor's amounts."""

from __future__ import annotations

import numpy as np
import pytest

from flows.batch_score import batch_score
from mlops.config import parse_config
from mlops.data import read_frame, write_frame
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.registry import Registry

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.mark.parametrize(
    ("store", "simulate", "target"),
    [("champion_store", simulate_churn, "churned"), ("spend_champion_store", simulate_spend, "monthly_spend")],
)
def test_batch_score_writes_the_champions_predictions_in_chunks(store, simulate, target, request, tmp_path):
    uri, raw = request.getfixturevalue(store)
    config = parse_config(raw)
    rows = simulate(250, seed=81).drop(columns=[target])
    data_uri = write_frame(rows, str(tmp_path / "in.parquet"))
    result = batch_score(config=config, data_uri=data_uri, output_uri=str(tmp_path / "out.parquet"), chunk_rows=100)
    assert (result.rows, result.chunks, result.model_version) == (250, 3, "1")

    scored = read_frame(result.output_uri)
    assert list(scored.columns[: len(rows.columns)]) == list(rows.columns)
    champion = Registry(uri).load_model(config.model.name, "1")
    features = rows.drop(columns=["event_time"])
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), champion.predict(features))
    probabilities = [c for c in scored.columns if c.startswith("probability_")]
    if config.model.task == "classification":
        assert probabilities == ["probability_0", "probability_1"]
    else:
        assert probabilities == [] and scored["prediction"].dtype.kind == "f"
        assert scored["prediction"].between(0, 300).all() and scored["prediction"].nunique() > 200
