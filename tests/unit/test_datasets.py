"""A config's training data: the flat file as before, or the entity frame joined to its feature service.

The store-fed cases use a real Feast repository under tmp_path (tests/feature_repo.py): file
offline store, SQLite online store, file registry under a temporary home.
"""

from __future__ import annotations

import pandas as pd
import pytest

from mlops import data, datasets, features
from mlops.config import DatasetConfig
from mlops.errors import ConfigError, DataError, FeatureStoreUnavailable
from tests.feature_repo import MARKER, STORE_YAML, balances, labelled_balances, make_repo


@pytest.fixture
def store_fed(tmp_path) -> tuple[DatasetConfig, pd.DataFrame, pd.Series, object]:
    """A store-fed dataset config over an applied repository; its entity frame; the expected balances."""
    rows, entity, expected = labelled_balances(40, seed=5)
    repo = make_repo(tmp_path, rows)
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)
    uri = data.write_frame(entity, str(tmp_path / "labels.parquet"))
    config = DatasetConfig(uri=uri, target="churned", timestamp="event_time", feature_service="scorer",
                           feature_repo=str(repo))
    return config, entity, expected, store


def test_a_flat_file_is_read_and_fingerprinted_as_before(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, None], "y": ["a", "b", "c"], "churned": [0, 1, 0]})
    uri = data.write_frame(frame, str(tmp_path / "flat.csv"))
    loaded = datasets.read_training_frame(DatasetConfig(uri=uri, target="churned"), tmp_path / "home")
    read = data.read_frame(uri)
    pd.testing.assert_frame_equal(loaded.frame, read)
    assert loaded.fingerprint == data.fingerprint_frame(read) and loaded.lineage == {}
    # No feature store is opened for a flat file: nothing is created under the home.
    assert not (tmp_path / "home").exists()


def test_a_store_fed_frame_is_joined_point_in_time_without_its_join_keys(tmp_path, store_fed):
    config, entity, expected, store = store_fed
    loaded = datasets.read_training_frame(config, tmp_path / "home")
    # The entity frame's rows in its order, the label and time untouched, the key gone, the feature added.
    assert list(loaded.frame.columns) == ["event_time", "churned", "balance"]
    pd.testing.assert_frame_equal(loaded.frame[["event_time", "churned"]], entity[["event_time", "churned"]])
    # Every label sees the balance of its own period: never the marker stamped a second after it.
    assert loaded.frame["balance"].tolist() == expected.tolist()
    assert loaded.frame["balance"].max() < MARKER
    assert loaded.fingerprint == data.fingerprint_frame(loaded.frame)
    assert loaded.lineage == {
        "feature_service": "scorer",
        "feature_repo": config.feature_repo,
        "entity_fingerprint": data.fingerprint_frame(entity),
        "feature_view.balance": features.view_version(store.get_feature_view("balance")),
    }
    assert len(loaded.lineage["feature_view.balance"]) == 12


def test_a_views_version_follows_its_definition_not_its_registry(tmp_path):
    def version(root, yaml_text=STORE_YAML, ttl_days: int | None = None) -> str:
        repo = make_repo(root, balances(), yaml_text)
        if ttl_days is not None:
            definitions = repo / "definitions.py"
            definitions.write_text(definitions.read_text().replace("timedelta(days=10)", f"timedelta(days={ttl_days})"))
        store = features.open_store(repo, root / "home")
        features.apply_repo(store, repo)
        features.materialize(store)  # materialization intervals are meta, not spec: no new version
        return features.service_lineage(store, "scorer").views["balance"]

    first = version(tmp_path / "a")
    assert version(tmp_path / "b") == first
    assert version(tmp_path / "c", ttl_days=3) != first


# -- bad input: one line naming the problem, the documented exit code -------------------------------


def test_a_missing_feature_service_names_it(tmp_path, store_fed):
    config, *_ = store_fed
    with pytest.raises(ConfigError, match=r"^unknown feature service 'nope' \(known: scorer\)$") as caught:
        datasets.read_training_frame(config.model_copy(update={"feature_service": "nope"}), tmp_path / "home")
    assert caught.value.exit_code == 2


def test_a_service_whose_view_the_registry_lacks_names_the_view(tmp_path, store_fed):
    config, _, _, store = store_fed
    store.delete_feature_view("balance")
    with pytest.raises(ConfigError, match=r"^feature service 'scorer' uses feature view 'balance', which the "
                                          r"registry does not hold \(run `mlops features apply`\?\)$") as caught:
        datasets.read_training_frame(config, tmp_path / "home")
    assert caught.value.exit_code == 2


def test_an_entity_frame_without_its_timestamp_names_the_column(tmp_path, store_fed):
    config, entity, *_ = store_fed
    uri = data.write_frame(entity.drop(columns="event_time"), str(tmp_path / "no-time.parquet"))
    with pytest.raises(DataError, match=r"^entity frame has no timestamp column 'event_time' \(columns: customer_id, churned\)$") as caught:
        datasets.read_training_frame(config.model_copy(update={"uri": uri}), tmp_path / "home")
    assert caught.value.exit_code == 2


def test_an_unreachable_store_is_unavailable_and_retried(tmp_path):
    # The registry's directory is a regular file: the registry can be neither read nor created.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    rows, entity, _ = labelled_balances(5)
    repo = make_repo(tmp_path, rows, STORE_YAML.replace("${MLOPS_HOME}/feast/registry.db", f"{blocker}/registry.db"))
    uri = data.write_frame(entity, str(tmp_path / "labels.parquet"))
    config = DatasetConfig(uri=uri, target="churned", timestamp="event_time", feature_service="scorer",
                           feature_repo=str(repo))
    with pytest.raises(FeatureStoreUnavailable, match="feature store unreachable") as caught:
        datasets.read_training_frame(config, tmp_path / "home")
    assert caught.value.exit_code == 1 and caught.value.transient and "\n" not in str(caught.value)
