"""The materialize flow: incremental runs, the per-view status artifact, bad input fails the run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.materialize import materialize
from mlops import features
from mlops.errors import ConfigError
from tasks.features import STATUS_ARTIFACT_KEY
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
