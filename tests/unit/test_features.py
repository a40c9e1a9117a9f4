"""The Feast adapter: point-in-time joins never leak the future; bad input fails in one line.

Each test builds a throwaway Feast repository under tmp_path (file offline store, SQLite online
store, file registry under a temporary MLOPS_HOME), so nothing here touches the stack's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops import features
from mlops.errors import ConfigError, DataError, FeatureStoreUnavailable
from tests.feature_repo import STORE_YAML, T0, TTL_DAYS, balances, make_repo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_and_repo(tmp_path):
    repo = make_repo(tmp_path, balances())
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)
    return store, repo


def test_apply_registers_the_definitions_under_the_home(tmp_path):
    repo = make_repo(tmp_path, balances())
    store = features.open_store(repo, tmp_path / "home")
    applied = features.apply_repo(store, repo)
    assert applied == {"entities": ["customer"], "feature_views": ["balance"],
                       "feature_services": ["scorer"], "deleted": []}
    # ${MLOPS_HOME} in feature_store.yaml is the home it was given, not the process's environment.
    assert (tmp_path / "home" / "feast" / "registry.db").is_file()


def test_a_value_stamped_after_the_label_never_reaches_the_training_frame(store_and_repo):
    store, _ = store_and_repo
    one_second = timedelta(seconds=1)
    entity = pd.DataFrame(
        {
            "customer_id": [1, 2, 1, 1, 2],
            "event_timestamp": [
                T0 + timedelta(days=5) - one_second,  # just before the change: the old value
                T0 + timedelta(days=3),  # between the two: the old value
                T0 + timedelta(days=5),  # exactly at the change: the new value is known
                T0 + timedelta(days=5 + TTL_DAYS) + one_second,  # past the TTL: nothing
                T0 - one_second,  # before any data: nothing, and the row stays
            ],
            "label": [0, 1, 1, 0, 1],
        }
    )
    frame = features.historical_frame(store, entity, "scorer")
    # Same rows, same order, the caller's columns untouched.
    pd.testing.assert_frame_equal(frame[entity.columns.tolist()], entity)
    assert frame["balance"].tolist()[:3] == [10.0, 20.0, 990.0]
    assert frame["balance"].iloc[3:].isna().all()


def test_two_labels_of_one_customer_at_one_instant_both_get_features(store_and_repo):
    # Feast keeps one of two entity rows with the same keys and time: the frame must not.
    store, _ = store_and_repo
    when = T0 + timedelta(days=6)
    entity = pd.DataFrame({"customer_id": [2, 1, 2, 1], "event_timestamp": [when, when, when, T0],
                           "label": [1, 0, 0, 1]})
    frame = features.historical_frame(store, entity, "scorer")
    pd.testing.assert_frame_equal(frame[entity.columns.tolist()], entity)
    assert frame["balance"].tolist() == [980.0, 990.0, 980.0, 10.0]


def test_point_in_time_join_matches_an_independent_as_of_join(tmp_path):
    # Each label gets a marker balance stamped one second after it, as if the outcome were written
    # back into the features: its own marker must never appear on its row (a later label of the
    # same customer may rightly see it), and every value must match an independent as-of join.
    rng = np.random.default_rng(7)
    customers, changes = 40, 6
    rows = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(1, customers + 1), changes),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 30 * 86400, customers * changes), unit="s"),
            "balance": rng.normal(100.0, 30.0, customers * changes).round(2),
        }
    ).drop_duplicates(["customer_id", "event_timestamp"])
    labels = pd.DataFrame(
        {
            "customer_id": rng.integers(1, customers + 1, 200),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 35 * 86400, 200), unit="s"),
        }
    )
    markers = -1.0 - np.arange(len(labels))
    leaks = labels.assign(event_timestamp=labels["event_timestamp"] + timedelta(seconds=1), balance=markers)
    repo = make_repo(tmp_path, pd.concat([rows, leaks], ignore_index=True))
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)

    frame = features.historical_frame(store, labels, "scorer")
    expected = pd.merge_asof(
        labels.reset_index().sort_values("event_timestamp"),
        pd.concat([rows, leaks]).sort_values("event_timestamp"),
        on="event_timestamp", by="customer_id", direction="backward",
        tolerance=pd.Timedelta(days=TTL_DAYS),
    ).sort_values("index")
    assert not (frame["balance"].to_numpy() == markers).any()
    assert frame["balance"].notna().sum() > 150  # most labels do see a value: the test has teeth
    np.testing.assert_array_equal(frame["balance"].to_numpy(), expected["balance"].to_numpy())


def test_materialize_is_incremental_and_reports_rows_per_view(store_and_repo):
    store, _ = store_and_repo
    assert [(s.name, s.last_materialized) for s in features.status(store)] == [("balance", None)]
    first_end = datetime(2025, 1, 3, tzinfo=UTC)
    first = features.materialize(store, end=first_end)
    # Up to day 3 each customer has its day-0 row: two rows, one per entity.
    assert [(s.name, s.rows_written, s.last_materialized) for s in first] == [("balance", 2, first_end)]
    second = features.materialize(store, end=first_end + timedelta(days=10))
    assert [s.rows_written for s in second] == [2]  # the day-5 rows, nothing more
    assert features.status(store)[0].last_materialized == first_end + timedelta(days=10)
    assert features.status(store)[0].ttl_seconds == TTL_DAYS * 86400
    online = store.get_online_features(features=["balance:balance"], entity_rows=[{"customer_id": 1}]).to_dict()
    assert online["balance"] == [990.0]


def test_status_renders_as_a_markdown_table():
    when = datetime(2025, 1, 3, tzinfo=UTC)
    text = features.render_markdown(
        [features.ViewStatus("balance", 864000, when, 2), features.ViewStatus("profile", None, None)]
    )
    assert "| balance | 2025-01-03T00:00:00+00:00 | 2 | 10 d |" in text
    assert "| profile | never | - | none |" in text
    assert features.ViewStatus("balance", 1, when, 2).to_dict()["last_materialized"] == when.isoformat()


# -- bad input: one line naming the problem, the documented exit code ------------------------------


def test_a_missing_feature_service_is_a_config_error(store_and_repo):
    store, _ = store_and_repo
    entity = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0]})
    with pytest.raises(ConfigError, match=r"unknown feature service 'nope' \(known: scorer\)") as caught:
        features.historical_frame(store, entity, "nope")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


@pytest.mark.parametrize("call", ["materialize", "status"])
def test_an_unknown_feature_view_is_a_config_error(store_and_repo, call):
    store, _ = store_and_repo
    with pytest.raises(ConfigError, match=r"unknown feature view 'nope' \(known: balance\)") as caught:
        getattr(features, call)(store, views=["nope"])
    assert caught.value.exit_code == 2


def test_an_entity_frame_without_its_timestamp_column_is_a_data_error(store_and_repo):
    store, _ = store_and_repo
    with pytest.raises(DataError, match="no timestamp column 'event_timestamp'") as caught:
        features.historical_frame(store, pd.DataFrame({"customer_id": [1]}), "scorer")
    assert caught.value.exit_code == 2
    with pytest.raises(DataError, match="lacks the join key 'customer_id'"):
        features.historical_frame(store, pd.DataFrame({"event_timestamp": [T0]}), "scorer")
    clash = pd.DataFrame({"customer_id": [1], "event_timestamp": [T0], "balance": [5.0]})
    with pytest.raises(DataError, match="already has column 'balance', a feature of service 'scorer'"):
        features.historical_frame(store, clash, "scorer")


def test_an_unreachable_store_is_reported_as_unavailable(tmp_path):
    # The registry's directory is a regular file: every read or write of the registry fails.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    repo = make_repo(tmp_path, balances(), STORE_YAML.replace("${MLOPS_HOME}/feast/registry.db", f"{blocker}/registry.db"))
    with pytest.raises(FeatureStoreUnavailable, match="feature store unreachable") as caught:
        store = features.open_store(repo, tmp_path / "home")
        features.apply_repo(store, repo)
    assert caught.value.exit_code == 1 and caught.value.transient and "\n" not in str(caught.value)


def test_a_missing_source_file_is_a_data_error_naming_it(store_and_repo):
    store, repo = store_and_repo
    (repo / "data" / "balance.parquet").unlink()
    with pytest.raises(DataError, match=r"materialize balance: file not found: .*/data/balance.parquet \(run `make data`\?\)$") as caught:
        features.materialize(store)
    assert caught.value.exit_code == 2 and not caught.value.transient


def test_a_repository_without_its_config_or_views_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="feature_store.yaml is missing"):
        features.open_store(tmp_path, tmp_path / "home")
    repo = make_repo(tmp_path, balances())
    store = features.open_store(repo, tmp_path / "home")
    with pytest.raises(ConfigError, match="run `mlops features apply` first"):
        features.materialize(store)


def test_the_projects_feature_repository_applies_and_serves_the_bundled_sources(tmp_path):
    store = features.open_store(REPO / "features", tmp_path / "home")
    applied = features.apply_repo(store, REPO / "features")
    assert applied["feature_views"] == ["customer_activity", "customer_profile"]
    assert applied["feature_services"] == ["churn_model"]
    # Customer 2's March activity is stamped 2025-03-01 00:01; a label a second earlier sees February's.
    activity = pd.read_parquet(REPO / "data" / "features" / "customer_activity.parquet")
    mine = activity[activity["customer_id"] == 2].set_index("event_timestamp")["monthly_charges"]
    march = pd.Timestamp("2025-03-01 00:01", tz="UTC")
    entity = pd.DataFrame({"customer_id": [2, 2], "event_timestamp": [march - timedelta(seconds=1), march]})
    frame = features.historical_frame(store, entity, "churn_model")
    assert frame["monthly_charges"].tolist() == [mine[march - pd.DateOffset(months=1)], mine[march]]
    assert frame[["age", "contract", "plan", "payment_method", "region"]].notna().all().all()


def test_the_cli_applies_materializes_and_reports_in_json(tmp_path, monkeypatch, capsys):
    from mlops import cli

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path, balances())
    assert cli.main(["features", "status", "--repo", str(repo), "--json"]) == 2  # nothing applied yet
    assert "run `mlops features apply` first" in json.loads(capsys.readouterr().out)["error"]
    assert cli.main(["features", "apply", "--repo", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["feature_views"] == ["balance"]
    assert cli.main(["features", "materialize", "--repo", str(repo), "--json"]) == 0
    # Feast's progress lines go to stderr: stdout is the one JSON object.
    [view] = json.loads(capsys.readouterr().out)["views"]
    assert (view["name"], view["rows_written"]) == ("balance", 2)
    assert cli.main(["features", "status", "--repo", str(repo), "--view", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "error: unknown feature view 'nope' (known: balance)"
    assert (tmp_path / "home" / "feast" / "online.db").is_file()


def test_using_the_store_leaves_no_prometheus_folder_for_child_processes(tmp_path):
    # Feast's import points PROMETHEUS_MULTIPROC_DIR at a folder it deletes at exit; inherited by
    # the worker `mlops stack up` starts, it made every flow run fail writing metrics there.
    code = (
        "import os, sys\n"
        "from mlops.features import store\n"
        f"store.open_store({str(REPO / 'features')!r}, {str(tmp_path)!r})\n"
        "import prometheus_client.values as values\n"
        "assert 'feast.metrics' in sys.modules\n"
        "print(sorted(k for k in os.environ if k.startswith('PROMETHEUS')), values.ValueClass.__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "MutexValue"]
