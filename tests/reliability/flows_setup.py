"""A small flow config and a fresh store with its data, shared by the in-process flow tests here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mlops.config import PipelineConfig, parse_config
from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from tests.timing import LENIENT_PROMOTION


def flow_config(model: str, data_uri: str, **sections: Any) -> PipelineConfig:
    """Quick to train (20 boosting rounds), no wall-clock smoke bound, no watch after promotion."""
    return parse_config({
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {"name": model, "params": {"max_iter": 20}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "rollback": {"enabled": False},
        "promotion": LENIENT_PROMOTION,
        **sections,
    })


def new_home(factory: pytest.TempPathFactory, template: Path, name: str, seed: int) -> tuple[Path, str, str]:
    """A fresh store copied from the migrated template, with 1,500 rows of data; (home, store uri, data uri)."""
    home = factory.mktemp(name)
    shutil.copy(template, home / "mlflow.db")
    data_uri = write_frame(simulate_churn(1500, seed=seed), str(home / "churn.parquet"))
    return home, f"sqlite:///{home / 'mlflow.db'}", data_uri
