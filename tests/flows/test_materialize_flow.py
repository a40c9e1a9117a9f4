"""The materialize flow: incremental runs, the per-view status artifact, bad input fails the run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.materialize import materialize
from mlops import features
from mlops.errors import ConfigError
from tasks.features import FRESHNESS_ARTIFACT_KEY, STATUS_ARTIFACT_KEY
from tests.feature_repo import balances, make_repo

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_materialize_loads_the_online_store_and_publishes_its_status(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path, balances())
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)

    state = materialize(repo=str(repo), return_state=True)
    assert state.is_completed()
    [status] = state.result()
    assert (status.name, status.rows_written) == ("balance", 2)  # two customers: each one latest row
    assert status.last_materialized <= datetime.now(UTC)
    # A second run finds nothing new: incremental, not a reload.
    assert [s.rows_written for s in materialize(repo=str(repo))] == [0]

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    [artifact] = [a for a in artifacts if a.key == STATUS_ARTIFACT_KEY]
    assert "| balance |" in artifact.data and "| 2 |" in artifact.data


def test_an_unknown_view_fails_the_run_with_its_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    repo = make_repo(tmp_path, balances())
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)
    state = materialize(repo=str(repo), views=["nope"], return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="unknown feature view 'nope'"):
        state.result()


# -- freshness: a failed run announces the views it leaves past their bound ------------------------

def _tagged_repo(tmp_path, bound: str = "120"):
    from mlops.features import STALENESS_TAG

    repo = make_repo(tmp_path, balances())
    definitions = repo / "definitions.py"
    definitions.write_text(definitions.read_text().replace(
        "ttl=timedelta", f"tags={{{STALENESS_TAG!r}: {bound!r}}}, ttl=timedelta"))
    return repo


def stale_events(view: str, since: float, wait: float = 20.0) -> list:
    """`mlops.features.stale` events about `view` emitted at or after `since` (waits up to `wait` s for one)."""
    import time

    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from mlops import events

    event_filter = EventFilter(event=EventNameFilter(name=[events.FEATURES_STALE]),
                               resource=EventResourceFilter(id=[events.feature_view_resource(view)["prefect.resource.id"]]))
    deadline = time.monotonic() + wait
    with get_client(sync_client=True) as client:
        while True:
            # Events carry this process's clock: no slack, so an earlier test's event never counts.
            found = [e for e in client.read_events(filter=event_filter, limit=50).events if e.occurred.timestamp() >= since]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def test_a_failed_run_emits_stale_for_a_view_never_materialized(tmp_path, monkeypatch):
    import time

    from mlops.errors import DataError

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    repo = _tagged_repo(tmp_path)
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)
    (repo / "data" / "balance.parquet").unlink()  # the source is gone: the run fails, not retried
    started = time.time()
    state = materialize(repo=str(repo), return_state=True)
    assert state.is_failed()
    with pytest.raises(DataError, match="file not found"):  # the run fails with the materialization's error
        state.result()
    [event] = stale_events("balance", started)
    payload = event.payload
    assert (payload["view"], payload["last_materialized"], payload["max_staleness_minutes"]) == ("balance", None, 120.0)
    assert payload["stale"] is True and payload["source"] == "materialize" and payload["age_minutes"] is None


def test_a_failed_run_whose_views_are_within_their_bound_emits_nothing(tmp_path, monkeypatch):
    import time

    from tests.flows.test_monitor_flow import _wait_for_sentinel

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    repo = _tagged_repo(tmp_path)
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)
    assert materialize(repo=str(repo))[0].rows_written == 2
    (repo / "data" / "balance.parquet").unlink()
    started = time.time()
    assert materialize(repo=str(repo), return_state=True).is_failed()
    # The run did check: its artifact lists the view as fresh (materialized moments ago, bound 2 h).
    from prefect import get_client

    with get_client(sync_client=True) as prefect:
        [artifact] = prefect.read_artifacts(limit=1, sort="CREATED_DESC",
                                            artifact_filter=_key_filter(FRESHNESS_ARTIFACT_KEY))
    assert "0 of 1 views stale" in artifact.data and "| balance |" in artifact.data
    # A sentinel sent after the run through the same client arrives after anything the run emitted.
    _wait_for_sentinel()
    assert stale_events("balance", started, wait=0) == []


def _key_filter(key: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    return ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
