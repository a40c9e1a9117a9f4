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


# -- a store-fed training set: labels explained by the balance as of their time --------------------

MARKER = 5000.0  # balances at or above this are the "future": stamped one second after a label


def labelled_balances(customers: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(feature rows, entity frame, the balance each label must be joined to) for `customers`.

    Each customer's balance changes every 5 days (days 0, 5, 10, 15; within the view's TTL); each
    label falls between two changes and says whether that balance, plus noise, is above 500. One
    second after each label a MARKER balance that gives its label away (MARKER + 1000 * label) is
    written, as if the outcome were fed back into the features: a join that leaked it would train a
    model on the answer. The next change comes before the next label, so no row may see a marker.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.arange(1, customers + 1)
    changes = pd.DataFrame(
        {
            "customer_id": np.repeat(ids, 4),
            "event_timestamp": T0 + pd.to_timedelta(np.tile(np.arange(4) * 5, customers), unit="D"),
            "balance": rng.uniform(0.0, 1000.0, customers * 4).round(2),
        }
    )
    at = changes["event_timestamp"] + pd.to_timedelta(rng.uniform(0.1, 4.9, len(changes)), unit="D").round("s")
    label = (changes["balance"].to_numpy() + rng.normal(0.0, 100.0, len(changes)) > 500.0).astype("int64")
    entity = pd.DataFrame(
        {"customer_id": changes["customer_id"], "event_time": at.dt.tz_localize(None), "churned": label}
    )
    markers = pd.DataFrame(
        {"customer_id": changes["customer_id"], "event_timestamp": at + timedelta(seconds=1),
         "balance": MARKER + 1000.0 * label}
    )
    rows = pd.concat([changes, markers], ignore_index=True)
    order = entity["event_time"].argsort(kind="stable")
    return rows, entity.iloc[order].reset_index(drop=True), changes["balance"].iloc[order].reset_index(drop=True)
