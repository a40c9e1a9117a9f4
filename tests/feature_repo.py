"""A throwaway Feast repository for tests: one entity, one view with a TTL, one service.

File offline store and SQLite online store, the registry under ${MLOPS_HOME}: nothing to start.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

T0 = pd.Timestamp("2025-01-01", tz="UTC")
TTL_DAYS = 10

STORE_YAML = """\
project: pit_test
provider: local
registry: ${MLOPS_HOME}/feast/registry.db
online_store:
  type: sqlite
  path: ${MLOPS_HOME}/feast/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""

DEFINITIONS = f"""\
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Float64
from feast.value_type import ValueType

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
source = FileSource(name="balance_source", path="data/balance.parquet", timestamp_field="event_timestamp")
balance = FeatureView(
    name="balance", entities=[customer], ttl=timedelta(days={TTL_DAYS}),
    schema=[Field(name="balance", dtype=Float64)], source=source,
)
scorer = FeatureService(name="scorer", features=[balance])
"""


def make_repo(root: Path, rows: pd.DataFrame, yaml_text: str = STORE_YAML) -> Path:
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(yaml_text)
    (repo / "definitions.py").write_text(DEFINITIONS)
    rows.to_parquet(repo / "data" / "balance.parquet", index=False)
    return repo


def balances() -> pd.DataFrame:
    """Two customers: a balance on day 0, and on day 5 a very different one (the 'future')."""
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2],
            "event_timestamp": [T0, T0 + timedelta(days=5), T0, T0 + timedelta(days=5)],
            "balance": [10.0, 990.0, 20.0, 980.0],
        }
    )
