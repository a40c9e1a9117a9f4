"""Retraining data: the reference dataset plus labelled live rows, shaped alike."""

from __future__ import annotations

import pandas as pd

from mlops.config import parse_config
from mlops.retraining import combine_with_labelled
from mlops.simulate import simulate_churn

CONFIG = parse_config({
    "dataset": {"uri": "x.parquet", "target": "churned", "timestamp": "event_time"},
    "model": {"name": "m"},
})


def _labelled(base: pd.DataFrame) -> pd.DataFrame:
    log = base.drop(columns=["churned", "event_time"]).head(5).copy()
    log["timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    log["label"] = [1, 0, 1, 1, 0]
    log["request_id"] = "r"
    return log


def test_labelled_rows_are_appended_with_label_as_target():
    base = simulate_churn(20, seed=1)
    combined = combine_with_labelled(base, _labelled(base), CONFIG)
    assert len(combined) == 25
    assert list(combined.columns) == list(base.columns)
    assert combined["churned"].tail(5).tolist() == [1, 0, 1, 1, 0]
    assert combined["event_time"].tail(1).iloc[0] == pd.Timestamp("2026-01-01")


def test_nothing_labelled_or_missing_feature_keeps_the_reference():
    base = simulate_churn(20, seed=2)
    assert combine_with_labelled(base, pd.DataFrame(), CONFIG) is base
    assert combine_with_labelled(base, _labelled(base).drop(columns=["age"]), CONFIG) is base
