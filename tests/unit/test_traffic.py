"""Simulated traffic for each bundled model: what its callers send, and the labels they send later."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.catalogue import load_catalogue
from mlops.config import parse_config
from mlops.errors import ConfigError
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.local.traffic import simulate_traffic

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_spend_traffic_carries_amounts_and_only_the_features():
    traffic = simulate_traffic("spend-regressor", 300, seed=5, catalogue=CONFIGS)
    frame = simulate_spend(300, seed=5, start="2026-01-01")
    assert list(traffic.features.columns) == [c for c in frame.columns if c not in ("monthly_spend", "event_time")]
    assert traffic.labels.equals(frame["monthly_spend"]) and traffic.labels.dtype.kind == "f"
    assert len(traffic.features) == len(traffic.labels) == 300


def test_churn_traffic_is_what_the_demo_always_sent():
    traffic = simulate_traffic("churn-classifier", 200, "strong", seed=6, start="2026-06-01", catalogue=CONFIGS)
    frame = simulate_churn(200, "strong", seed=6, start="2026-06-01")
    assert traffic.features.equals(frame.drop(columns=["churned", "event_time"]))
    assert set(traffic.labels) <= {0, 1} and traffic.labels.equals(frame["churned"])


def test_a_config_chooses_the_simulator_by_its_target():
    config = load_catalogue(CONFIGS).get("spend-regressor").config
    assert simulate_traffic(config, 50, seed=1).labels.equals(simulate_traffic("spend-regressor", 50, seed=1,
                                                                               catalogue=CONFIGS).labels)
    other = parse_config({"dataset": {"uri": "x.csv", "target": "price"}, "model": {"name": "price"}})
    with pytest.raises(ValueError, match="no simulator for target column 'price'"):
        simulate_traffic(other, 10)


def test_an_unknown_model_is_named():
    with pytest.raises(ConfigError, match="unknown model 'nope'.*spend-regressor"):
        simulate_traffic("nope", 10, catalogue=CONFIGS)
