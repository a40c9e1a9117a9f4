"""The monitor of a store-fed model checks its feature service's views for freshness, against a real
Prefect server; the champion is a copy of the session's (`champion_store`), the config names a
throwaway Feast repository whose view has a 2-hour staleness bound."""

from __future__ import annotations

import time

import pytest

from flows.monitor import monitor
from mlops import features
from mlops.config import parse_config
from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from tests.conftest import CHAMPION_MODEL
from tests.flows.test_materialize_flow import _tagged_repo, stale_events
from tests.flows.test_monitor_flow import _wait_for_sentinel

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def store_fed(champion_store, tmp_path):
    """(config, repo, home): the champion's config fed by the repository's service `scorer`, applied."""
    home = tmp_path / "home"  # champion_store's MLOPS_HOME: the registry lives with the copy
    repo = _tagged_repo(tmp_path / "features")
    features.apply_repo(features.open_store(repo, home), repo)
    raw = champion_store[1]
    raw["dataset"] = {**raw["dataset"], "feature_service": "scorer", "feature_repo": str(repo)}
    return parse_config(raw), repo, home


def _too_few_rows(tmp_path) -> str:
    # No drift verdict: the freshness check must not depend on one (it runs before the window is read).
    return write_frame(simulate_churn(50, seed=61), str(tmp_path / "small.parquet"))


def test_a_view_never_materialized_is_reported_and_emits_stale_for_the_model(store_fed, tmp_path):
    config, _, _ = store_fed
    started = time.time()
    result = monitor(config=config, current_uri=_too_few_rows(tmp_path))
    assert result.status == "insufficient-data"
    freshness = result.feature_freshness
    assert (freshness["feature_service"], freshness["stale"], freshness["error"]) == ("scorer", ["balance"], None)
    [view] = freshness["views"]
    assert (view["last_materialized"], view["max_staleness_minutes"]) == (None, 120.0)
    [event] = stale_events("balance", started)
    assert event.payload["model_name"] == CHAMPION_MODEL and event.payload["source"] == "monitor"
    assert result.to_dict()["feature_freshness"]["stale"] == ["balance"]


def test_fresh_views_are_reported_and_emit_nothing(store_fed, tmp_path):
    config, repo, home = store_fed
    features.materialize(features.open_store(repo, home))
    started = time.time()
    result = monitor(config=config, current_uri=_too_few_rows(tmp_path))
    freshness = result.feature_freshness
    assert freshness["stale"] == [] and freshness["views"][0]["age_minutes"] < 120
    _wait_for_sentinel()
    assert stale_events("balance", started, wait=0) == []


def test_an_unknown_feature_service_leaves_freshness_unknown_and_the_drift_check_running(store_fed, tmp_path):
    config, _, _ = store_fed
    config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"feature_service": "nope"})})
    drifted = write_frame(simulate_churn(2000, "strong", seed=62), str(tmp_path / "drifted.parquet"))
    result = monitor(config=config, current_uri=drifted)
    assert result.status == "breach"  # the drift check went on
    assert result.feature_freshness["views"] == [] and "unknown feature service 'nope'" in result.feature_freshness["error"]


def test_a_model_on_a_flat_file_has_no_freshness(champion_store, tmp_path):
    result = monitor(config=parse_config(champion_store[1]), current_uri=_too_few_rows(tmp_path))
    assert result.feature_freshness is None
