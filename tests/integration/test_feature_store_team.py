"""A team's feature store for real: SQL registry on the machine's PostgreSQL, Redis online store,
sources on S3 (a moto server on a loopback port, as tests/integration/test_production_stack.py).

Set by environment variables only (MLOPS_FEAST_REGISTRY, MLOPS_FEAST_ONLINE_STORE,
MLOPS_FEAST_SOURCE_URI with MLOPS_S3_ENDPOINT_URL); the repository's feature_store.yaml still says
SQLite, which proves the variables decide. PostgreSQL is 127.0.0.1:5432 (or MLOPS_TEST_POSTGRES_URL),
Redis 127.0.0.1:6379 (or MLOPS_TEST_REDIS_URL): each test gets its own database and its own Feast
project (Redis keys end with the project name), both removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from mlops import features
from mlops.errors import FeatureStoreUnavailable
from tests.feature_repo import STORE_YAML, balances, make_repo

pytestmark = pytest.mark.integration


def _postgres_admin() -> str:
    return os.environ.get("MLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _redis_url() -> str:
    return os.environ.get("MLOPS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def registry_url() -> Iterator[str]:
    """A fresh database for the SQL registry, dropped (with its connections) after the test."""
    import psycopg

    admin = _postgres_admin()
    try:
        conn = psycopg.connect(admin, connect_timeout=5, autocommit=True)  # CREATE DATABASE: no transaction
    except psycopg.OperationalError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {admin}: {str(err).splitlines()[0]}")
    name = f"mlops_test_feast_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            parts = urlsplit(admin)
            yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(_redis_url(), socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as err:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {_redis_url()}: {err}")
    yield client
    client.close()


@pytest.fixture
def team_repo(tmp_path, monkeypatch, registry_url, redis_client):
    """A repository with its own Feast project, its registry and online store named by the environment."""
    project = f"mlops_test_{uuid.uuid4().hex[:10]}"
    repo = make_repo(tmp_path, balances(), STORE_YAML.replace("project: pit_test", f"project: {project}"))
    monkeypatch.setenv("MLOPS_FEAST_REGISTRY", registry_url)
    monkeypatch.setenv("MLOPS_FEAST_ONLINE_STORE", _redis_url())
    yield repo, project, registry_url
    # Feast's Redis keys end with the project's name: only this test's keys go.
    keys = list(redis_client.scan_iter(match=f"*{project}"))
    if keys:
        redis_client.delete(*keys)


def _online_balances(store, customers: list[int]) -> dict[int, float | None]:
    response = store.get_online_features(
        features=["balance:balance"], entity_rows=[{"customer_id": c} for c in customers]
    ).to_dict()
    return dict(zip(response["customer_id"], response["balance"], strict=True))


def test_apply_materialize_and_read_back_on_postgres_and_redis(team_repo, redis_client, tmp_path):
    import psycopg

    repo, project, registry_url = team_repo
    store = features.open_store(repo, tmp_path / "home")
    assert store.config.registry.registry_type == "sql" and store.config.online_store.type == "redis"
    applied = features.apply_repo(store, repo)
    assert applied["feature_views"] == ["balance"] and applied["feature_services"] == ["scorer"]

    [status] = features.materialize(store)
    assert status.rows_written == 2

    # A team member's process: a new store over the same registry and online store sees it all.
    other = features.open_store(repo, tmp_path / "elsewhere")
    assert _online_balances(other, [1, 2, 3]) == {1: 990.0, 2: 980.0, 3: None}  # latest per customer; 3 unknown
    [fresh] = features.view_freshness(other)
    assert fresh.last_materialized == status.last_materialized

    # Nothing local: the definitions are rows in PostgreSQL, the values keys in Redis.
    with psycopg.connect(registry_url) as conn:
        rows = conn.execute("SELECT feature_view_name FROM feature_views WHERE project_id = %s", (project,)).fetchall()
    assert rows == [("balance",)]
    assert len(list(redis_client.scan_iter(match=f"*{project}"))) == 2  # one hash per customer
    assert not (tmp_path / "home" / "feast" / "registry.db").exists()
    assert not (tmp_path / "home" / "feast" / "online.db").exists()


def test_an_unreachable_redis_is_one_line_not_a_traceback(team_repo, tmp_path, monkeypatch):
    from mlops.local.stack import free_port

    repo, _, _ = team_repo
    features.apply_repo(features.open_store(repo, tmp_path / "home"), repo)
    # Nothing listens on a fresh loopback port: the registry answers, the online store does not.
    monkeypatch.setenv("MLOPS_FEAST_ONLINE_STORE", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(FeatureStoreUnavailable, match="materialize balance: feature store unreachable"):
        features.materialize(features.open_store(repo, tmp_path / "home"))


@pytest.fixture
def s3_sources(tmp_path, monkeypatch) -> Iterator[str]:
    """A moto S3 server with a bucket; the AWS variables a team member would export (dummy ones)."""
    import boto3

    from mlops.local import stack
    from tests.s3 import AWS_ENV, moto_service

    service = moto_service(stack.free_port())
    proc = stack.start(service, tmp_path / "moto", timeout=60)
    try:
        for key, value in AWS_ENV.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=service.url).create_bucket(Bucket="features")
        monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", service.url)
        yield service.url
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)


def test_sources_on_s3_feed_materialization_and_training_frames(team_repo, s3_sources, tmp_path, monkeypatch):
    import boto3
    import pandas as pd

    from tests.feature_repo import T0

    repo, _, _ = team_repo
    local = repo / "data" / "balance.parquet"
    boto3.client("s3", endpoint_url=s3_sources).upload_file(str(local), "features", "team/balance.parquet")
    local.unlink()  # only S3 has the rows now: a read of the local path would fail
    monkeypatch.setenv("MLOPS_FEAST_SOURCE_URI", "s3://features/team")

    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)
    assert store.get_feature_view("balance").batch_source.path == "s3://features/team/balance.parquet"
    [status] = features.materialize(store)
    assert status.rows_written == 2
    assert _online_balances(store, [1, 2]) == {1: 990.0, 2: 980.0}
    # Training reads the same S3 source, point in time: day 1 sees the day-0 balance, not day 5's.
    entity = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [T0 + pd.Timedelta(days=1)] * 2, "label": [0, 1]})
    frame = features.historical_frame(store, entity, "scorer")
    assert frame["balance"].tolist() == [10.0, 20.0]
