"""The S3 endpoint is down when a run reads its data: retried, then a clean failure; a rerun succeeds."""

from __future__ import annotations

import boto3
import pytest

from flows.train import train
from mlops.data import serialize_frame
from mlops.errors import StorageUnavailable
from mlops.local import stack
from mlops.local.simulate import simulate_churn
from mlops.registry import Registry
from tests.reliability.flows_setup import flow_config, new_home
from tests.s3 import AWS_ENV, moto_service

MODEL = "s3-outage"
BUCKET = "outage-data"


def _load_attempts(flow_run_id) -> int:
    """How many times the run's load-dataset task ran (first try plus retries)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    (load,) = [r for r in runs if r.name.startswith("load-dataset")]
    return load.run_count


def test_an_unreachable_s3_is_retried_then_fails_cleanly_and_a_rerun_succeeds(
    prefect_api, mlflow_template, tmp_path_factory, monkeypatch
):
    home, store, _ = new_home(tmp_path_factory, mlflow_template, "s3-outage", seed=91)
    port = stack.free_port()
    for key, value in {**AWS_ENV, "MLFLOW_TRACKING_URI": store, "MLOPS_HOME": str(home),
                       "MLOPS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(key, value)
    config = flow_config(MODEL, f"s3://{BUCKET}/churn.parquet")

    # Nothing answers on the endpoint: the read is tried three times, then the run fails on one line.
    state = train(config=config, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, StorageUnavailable), repr(error)
    assert str(error).startswith(f"s3://{BUCKET}/churn.parquet: S3 endpoint unreachable") and "\n" not in str(error)
    assert _load_attempts(state.state_details.flow_run_id) == 3
    registry = Registry(store)
    assert registry.list_versions(MODEL) == []

    # The endpoint comes back with the data: the same run goes through and registers v1 once.
    proc = stack.start(moto_service(port), home, timeout=60)
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=AWS_ENV["AWS_DEFAULT_REGION"])
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="churn.parquet", Body=serialize_frame(simulate_churn(1500, seed=91), "parquet"))
        rerun = train(config=config, return_state=True)
        assert rerun.is_completed(), rerun.message
        assert _load_attempts(rerun.state_details.flow_run_id) == 1
        assert [str(v.version) for v in registry.list_versions(MODEL)] == ["1"]
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)


pytestmark = pytest.mark.integration
