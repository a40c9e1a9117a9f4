"""A store-fed model for tests and benchmarks: a Feast repository stamped around now, and a classifier
trained on exactly its feature service's columns.

Two views with different TTLs let one lookup show every per-record status: `profile` (age, plan;
TTL 365 days) and `activity` (balance, calls; TTL 10 days). Customers 1..N have both, fresh;
STALE has a profile and an activity row 20 days old; PROFILE_ONLY has no activity at all; nothing
knows UNKNOWN. Stamps are relative to the time the data is made, since serving judges staleness
against the current time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SERVICE = "churn_online"
STALE = 5001
PROFILE_ONLY = 5002
UNKNOWN = 9999
FEATURES = ("age", "plan", "balance", "calls")

STORE_YAML = """\
project: {project}
provider: local
registry: ${{MLOPS_HOME}}/feast/registry.db
online_store:
{online_store}
offline_store:
  type: file
entity_key_serialization_version: 3
"""
SQLITE = "  type: sqlite\n  path: ${MLOPS_HOME}/feast/online.db"

DEFINITIONS = """\
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
profile = FeatureView(
    name="profile", entities=[customer], ttl=timedelta(days=365),
    schema=[Field(name="age", dtype=Int64), Field(name="plan", dtype=String)],
    source=FileSource(name="profile_source", path="data/profile.parquet", timestamp_field="event_timestamp"),
)
activity = FeatureView(
    name="activity", entities=[customer], ttl=timedelta(days=10),
    schema=[Field(name="balance", dtype=Float64), Field(name="calls", dtype=Int64)],
    source=FileSource(name="activity_source", path="data/activity.parquet", timestamp_field="event_timestamp"),
)
churn_online = FeatureService(name="churn_online", features=[profile, activity])
"""


def redis_store(address: str) -> str:
    return f'  type: redis\n  connection_string: "{address}"'


def make_store_repo(root: Path, customers: int = 200, project: str = "serve_test", online_store: str = SQLITE,
                    now: datetime | None = None) -> Path:
    """The repository under `root`/repo with its sources: `customers` fresh customers plus the three odd ones."""
    now = now or datetime.now(UTC)
    rng = np.random.default_rng(3)
    ids = np.arange(1, customers + 1)
    stamp = pd.Timestamp(now)
    profile = pd.DataFrame({
        "customer_id": np.concatenate([ids, [STALE, PROFILE_ONLY]]),
        "event_timestamp": stamp - timedelta(days=30),
        "age": rng.integers(18, 80, customers + 2),
        "plan": rng.choice(["basic", "plus", "pro"], customers + 2),
    })
    # Two activity rows per fresh customer (the older one must never be served) and a stale one.
    activity = pd.DataFrame({
        "customer_id": np.concatenate([ids, ids, [STALE]]),
        "event_timestamp": [stamp - timedelta(days=8)] * customers + [stamp - timedelta(hours=1)] * customers
        + [stamp - timedelta(days=20)],
        "balance": rng.normal(100.0, 40.0, 2 * customers + 1).round(2),
        "calls": rng.integers(0, 9, 2 * customers + 1),
    })
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(STORE_YAML.format(project=project, online_store=online_store))
    (repo / "definitions.py").write_text(DEFINITIONS)
    profile.to_parquet(repo / "data" / "profile.parquet", index=False)
    activity.to_parquet(repo / "data" / "activity.parquet", index=False)
    return repo


def applied_store(repo: Path, home: Path, now: datetime | None = None) -> Any:
    """The repository applied and materialized up to `now` under `home` (as `mlops features` would)."""
    from mlops import features

    store = features.open_store(repo, home)
    features.apply_repo(store, repo)
    features.materialize(store, end=now or datetime.now(UTC))
    return store


def training_frame(store: Any, customers: int, at: datetime) -> pd.DataFrame:
    """The service's features of customers 1..N at `at` (point in time), with a label that depends on them."""
    from mlops import features

    entity = pd.DataFrame({"customer_id": np.arange(1, customers + 1), "event_timestamp": pd.Timestamp(at)})
    frame = features.historical_frame(store, entity, SERVICE)
    frame["churned"] = ((frame["balance"] > 100) ^ (frame["plan"] == "basic")).astype(int)
    return frame


def register_store_fed(tracking_uri: str, artifacts: Path, name: str, frame: pd.DataFrame) -> None:
    """Fit a classifier on exactly the service's columns and register it as `name`@champion."""
    from mlops.config import ModelConfig
    from mlops.contract import infer_contract
    from mlops.registry import ALIAS_CHAMPION, Registry
    from mlops.training import feature_frame, fit_pipeline, skops_trusted_types

    data = frame[[*FEATURES, "churned"]]
    contract = infer_contract(data, "churned", None, "classification")
    pipeline = fit_pipeline(data, contract, ModelConfig(name=name, params={"max_iter": 20}))
    registry = Registry(tracking_uri, artifact_root=artifacts)
    run_id = registry.start_run(name, "store-fed", {})
    registry.register_model(
        run_id, name, pipeline, contract, feature_frame(data.head(5), contract),
        skops_trusted_types(pipeline), tags={}, alias=ALIAS_CHAMPION,
    )
    registry.end_run(run_id, True)


def store_fed_config(name: str, repo: Path, log_uri: str, **serving: Any) -> dict[str, Any]:
    """The pipeline config that makes serving treat `name` as store-fed."""
    return {
        "dataset": {"uri": "unused.parquet", "target": "churned", "timestamp": "event_timestamp",
                    "feature_service": SERVICE, "feature_repo": str(repo)},
        "model": {"name": name},
        "serving": {"prediction_log_uri": log_uri, "refresh_seconds": 0.5, **serving},
    }
