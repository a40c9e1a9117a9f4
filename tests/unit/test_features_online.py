"""The Feast adapter's batched online lookup: one call, per-row statuses, the same values as the offline join.

A throwaway repository (tests/store_fed.py: views `profile`, TTL 365 d, and `activity`, TTL 10 d)
is applied and materialized under tmp_path with the SQLite online store; `now` is fixed, so the
TTL boundary is exact.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlops import features
from mlops.errors import ConfigError, FeatureStoreUnavailable
from tests import store_fed
from tests.store_fed import FEATURES, SERVICE, STALE, UNKNOWN

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_and_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    repo = store_fed.make_store_repo(root, 30, now=NOW)
    return store_fed.applied_store(repo, root / "home", NOW), repo


def test_one_lookup_gives_each_row_its_status(store_and_repo):
    store, _ = store_and_repo
    schema = features.describe_service(store, SERVICE)
    assert schema.join_keys == {"customer_id": (int,)}
    assert schema.views == {"age": "profile", "plan": "profile", "balance": "activity", "calls": "activity"}
    assert schema.ttl_seconds == {"profile": 365 * 86400, "activity": 10 * 86400}
    assert schema.reader is None  # SQLite is read through Feast's get_online_features
    rows = [{"customer_id": i} for i in (1, UNKNOWN, STALE, store_fed.PROFILE_ONLY, 1)]
    online = features.online_features(store, schema, rows, now=NOW)
    assert [s.status for s in online.statuses] == ["ok", "unknown_entity", "stale", "missing_feature", "ok"]
    unknown, stale, missing = online.statuses[1:4]
    assert unknown.detail == f"unknown entity customer_id={UNKNOWN}: the online store has no features of service '{SERVICE}' for it"
    assert (stale.view, stale.feature) == ("activity", "balance")
    stamped = (NOW - timedelta(days=20)).isoformat()
    assert stale.detail == (f"feature 'balance' of view 'activity' is stale for customer_id={STALE}: stamped {stamped}, "
                            "older than the view's TTL of 10 d")
    assert (missing.view, missing.feature) == ("activity", "balance")
    # Not found is None; a stale value is returned as stored (the status says not to trust it).
    assert online.columns["age"][1] is None and online.columns["balance"][3] is None
    assert online.columns["balance"][2] is not None
    assert online.columns["balance"][0] == online.columns["balance"][4]
    frame = online.frame()
    assert frame.columns.tolist() == ["customer_id", *FEATURES] and frame["customer_id"].tolist() == [r["customer_id"] for r in rows]


def test_a_value_is_stale_one_second_after_its_ttl_not_before(store_and_repo):
    store, _ = store_and_repo
    schema = features.describe_service(store, SERVICE)
    stamped = NOW - timedelta(days=20)  # STALE's activity row
    at_ttl = features.online_features(store, schema, [{"customer_id": STALE}], now=stamped + timedelta(days=10))
    after = features.online_features(store, schema, [{"customer_id": STALE}], now=stamped + timedelta(days=10, seconds=1))
    assert at_ttl.statuses[0].ok and after.statuses[0].status == "stale"


def test_features_given_with_the_request_are_not_held_against_a_row(store_and_repo):
    store, _ = store_and_repo
    schema = features.describe_service(store, SERVICE)
    online = features.online_features(store, schema, [{"customer_id": STALE}, {"customer_id": UNKNOWN}], now=NOW)
    assert online.row_status(0, {"balance"}).status == "stale"  # calls is stale as well
    assert online.row_status(0, {"balance", "calls"}).ok
    assert online.row_status(1, {"balance", "calls"}).status == "missing_feature"  # no profile either
    assert online.row_status(1, set(FEATURES)).ok


def test_online_values_equal_the_point_in_time_join_at_the_same_time(store_and_repo):
    store, _ = store_and_repo
    ids = list(range(1, 31))
    online = features.online_features(store, features.describe_service(store, SERVICE), [{"customer_id": i} for i in ids],
                                      now=NOW)
    offline = features.historical_frame(store, pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp(NOW)}), SERVICE)
    for column in FEATURES:
        assert online.columns[column] == offline[column].tolist(), column
    # The fresh customers' older activity rows (8 days back) exist offline: a join a day ago would differ.
    earlier = features.historical_frame(
        store, pd.DataFrame({"customer_id": ids, "event_timestamp": pd.Timestamp(NOW - timedelta(days=1))}), SERVICE)
    assert earlier["balance"].tolist() != online.columns["balance"]


def test_an_unknown_feature_service_is_a_config_error(store_and_repo):
    store, _ = store_and_repo
    with pytest.raises(ConfigError, match=rf"unknown feature service 'nope' \(known: {SERVICE}\)"):
        features.describe_service(store, "nope")


def test_an_unreachable_online_store_is_unavailable_in_one_line(store_and_repo, tmp_path):
    _, repo = store_and_repo
    # The online database's directory is a regular file: SQLite cannot open it.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "definitions.py").write_text((repo / "definitions.py").read_text())
    (moved / "feature_store.yaml").write_text(
        (repo / "feature_store.yaml").read_text().replace("${MLOPS_HOME}/feast/online.db", f"{blocker}/online.db"))
    home = repo.parent / "home"
    store = features.open_store(moved, home)
    schema = features.describe_service(store, SERVICE)
    with pytest.raises(FeatureStoreUnavailable, match="^online features: feature store unreachable: ") as caught:
        features.online_features(store, schema, [{"customer_id": 1}], now=NOW)
    assert "\n" not in str(caught.value) and caught.value.transient
