"""The production stack for real: Prefect and MLflow servers on PostgreSQL, artifacts and data in S3.

PostgreSQL is the machine's (127.0.0.1:5432, or MLOPS_TEST_POSTGRES_URL); each run creates its own
databases and drops them afterwards. The S3 endpoint is a moto server started here. The chain
train (with a hyperparameter search) -> deploy -> monitor -> score runs through the `mlops` command,
as a team member runs it, fanning search candidates and score chunks out on a Dask LocalCluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from mlops.data import read_frame, write_frame
from mlops.local import stack
from mlops.local.simulate import simulate_churn
from tests.s3 import AWS_ENV, moto_service

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
MODEL = "prod-churn"
BUCKET = "mlops-test"
# moto accepts any credentials; real ones must never be needed (or leak) here.


def _admin_url() -> str:
    return os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _database_url(admin_url: str, database: str, driver: str = "postgresql") -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((driver, parts.netloc, f"/{database}", "", ""))


def _query(url: str, sql: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Callable[[str], str]]:
    """A factory of fresh, uniquely named databases; every one is dropped at the end."""
    import psycopg

    admin = _admin_url()
    try:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        conn = psycopg.connect(admin, connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {admin}: {str(err).splitlines()[0]}")
    created: list[str] = []

    def create(purpose: str) -> str:
        name = f"mlops_test_{purpose}_{uuid.uuid4().hex[:10]}"
        conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    try:
        yield create
    finally:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port, with the test bucket created."""
    import boto3

    home = tmp_path_factory.mktemp("moto")
    port = stack.free_port()
    service = moto_service(port)
    proc = stack.start(service, home, timeout=60)
    try:
        boto3.client("s3", endpoint_url=service.url, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield service.url
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


@dataclass(frozen=True)
class ProductionStack:
    prefect_api: str
    mlflow_url: str
    s3_endpoint: str
    prefect_db: str
    mlflow_db: str
    home: Path

    def env(self) -> dict[str, str]:
        """What a team member exports: server URLs, the S3 endpoint and credentials; nothing local."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_", "AWS_"))}
        env.update(AWS_ENV)
        env.update(
            PREFECT_API_URL=self.prefect_api,
            MLFLOW_TRACKING_URI=self.mlflow_url,
            MLOPS_S3_ENDPOINT_URL=self.s3_endpoint,
            MLOPS_HOME=str(self.home / "client"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            GX_ANALYTICS_ENABLED="false",
        )
        return env

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, **_boto_credentials())


@pytest.fixture(scope="module")
def production_stack(postgres, s3_endpoint, tmp_path_factory) -> Iterator[ProductionStack]:
    """Prefect server on PostgreSQL; MLflow server on PostgreSQL with artifacts proxied to S3."""
    home = tmp_path_factory.mktemp("prod-stack")
    admin = _admin_url()
    prefect_db, mlflow_db = postgres("prefect"), postgres("mlflow")
    prefect = stack.prefect_service(
        home, "127.0.0.1", stack.free_port(), database_url=_database_url(admin, prefect_db, "postgresql+asyncpg")
    )
    mlflow = stack.mlflow_server_service(
        "127.0.0.1", stack.free_port(),
        backend_uri=_database_url(admin, mlflow_db),
        artifacts_destination=f"s3://{BUCKET}/mlflow",
        allowed_hosts="127.0.0.1,127.0.0.1:*,localhost:*",
        s3_endpoint_url=s3_endpoint,
    )
    mlflow.env.update(AWS_ENV)
    started = []
    try:
        for service in (prefect, mlflow):
            proc = stack.start(service, home, timeout=240)
            assert proc is not None, f"something already answers at {service.health_url}"
            started.append(proc)
        yield ProductionStack(
            prefect_api=f"{prefect.url}/api", mlflow_url=mlflow.url, s3_endpoint=s3_endpoint,
            prefect_db=_database_url(admin, prefect_db), mlflow_db=_database_url(admin, mlflow_db), home=home,
        )
    finally:
        for proc in reversed(started):
            stack.stop_pid(proc.pid)


def _mlops(prod: ProductionStack, *args: str) -> dict:
    proc = subprocess.run(
        [str(BIN / "mlops"), *args, "--json"], cwd=prod.home, env=prod.env(), capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"mlops {args[0]} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def _keys(prod: ProductionStack, prefix: str) -> list[str]:
    pages = prod.s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_train_deploy_monitor_score_on_postgres_and_s3(production_stack: ProductionStack):
    prod = production_stack
    client = prod.s3()
    data_uri, current_uri = f"s3://{BUCKET}/data/churn.parquet", f"s3://{BUCKET}/data/current.parquet"
    write_frame(simulate_churn(2500, seed=41), data_uri, client)
    write_frame(simulate_churn(600, drift="strong", seed=42, start="2025-06-01"), current_uri, client)
    predictions_uri = f"s3://{BUCKET}/predictions/scored.parquet"
    config = prod.home / "config.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {
            "name": MODEL, "params": {"max_iter": 30},
            "search": {"param_grid": {"learning_rate": [0.1, 0.3]}, "cv": 2},
        },
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"min_metrics": {"roc_auc": 0.6}},
        # No serving app to watch here: deploy decides and returns.
        "rollback": {"enabled": False},
        "execution": {"task_runner": "dask", "n_workers": 2, "threads_per_worker": 1},
    }))

    trained = _mlops(prod, "train", "--config", str(config))
    assert (trained["status"], trained["model_version"], trained["data_uri"]) == ("registered", "1", data_uri)
    assert trained["run_url"].startswith(prod.mlflow_url)
    deployed = _mlops(prod, "deploy", "--config", str(config))
    assert (deployed["status"], deployed["champion_version"]) == ("promoted", "1")
    monitored = _mlops(prod, "monitor", "--config", str(config), "--current", current_uri)
    assert monitored["status"] == "breach" and monitored["rows"] == 600
    scored = _mlops(prod, "score", "--config", str(config), "--data", current_uri, "--out", predictions_uri,
                    "--chunk-rows", "200")
    assert (scored["rows"], scored["chunks"], scored["model_version"]) == (600, 3, "1")

    # Artifacts went through the MLflow server into the bucket: model, reference data, drift report.
    artifacts = _keys(prod, "mlflow/")
    for suffix in ("model.skops", "MLmodel", "reference/reference.parquet", "drift/report.html"):
        assert any(key.endswith(suffix) for key in artifacts), f"no */{suffix} under s3://{BUCKET}/mlflow/"
    # Batch predictions were written to S3, every input row with a prediction.
    predictions = read_frame(predictions_uri, client)
    assert len(predictions) == 600 and predictions["prediction"].notna().all()

    # The registry lives in PostgreSQL: the version and its champion alias are rows there.
    assert _query(prod.mlflow_db, "SELECT version FROM model_versions WHERE name = %s", MODEL) == [(1,)]
    assert _query(
        prod.mlflow_db, "SELECT alias, version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", MODEL
    ) == [("champion", 1)]
    # So do Prefect's flow runs, each completed; the score chunks ran as task runs of batch-score.
    runs = _query(prod.prefect_db, "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id")
    assert sorted(runs) == sorted(
        [("train", "COMPLETED"), ("deploy", "COMPLETED"), ("monitor", "COMPLETED"), ("batch-score", "COMPLETED")]
    )
    # Search candidates and score chunks ran on Dask workers, each a completed task run of its flow.
    fanned = _query(
        prod.prefect_db,
        "SELECT f.name, count(*) FROM task_run t JOIN flow_run r ON r.id = t.flow_run_id JOIN flow f ON f.id = r.flow_id "
        "WHERE (starts_with(t.name, 'score-chunk-') OR starts_with(t.name, 'score-candidate-'))"
        " AND t.state_type = 'COMPLETED' GROUP BY f.name",
    )
    assert sorted(fanned) == [("batch-score", 3), ("train", 2)]
    best = _query(prod.mlflow_db, "SELECT key FROM params WHERE run_uuid = %s AND starts_with(key, 'search.best.')",
                  trained["run_id"])
    assert best == [("search.best.learning_rate",)]
