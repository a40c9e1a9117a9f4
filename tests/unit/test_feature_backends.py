"""A team's feature store from environment variables: the registry, online store and source entries."""

from __future__ import annotations

import pytest

from mlops import features
from mlops.errors import ConfigError
from mlops.features.backends import (
    online_store_config,
    registry_config,
    source_location,
    with_team_stores,
)
from tests.feature_repo import balances, make_repo


@pytest.mark.parametrize("url, connection", [
    ("redis://127.0.0.1:6379", "127.0.0.1:6379"),
    ("redis://cache", "cache:6379"),
    ("redis://cache:6380/2", "cache:6380,db=2"),
    ("redis://:p%40ss@cache:6379/0", "cache:6379,db=0,password=p@ss"),
    ("rediss://feast:pw@cache:6380", "cache:6380,username=feast,password=pw,ssl=true"),
])
def test_a_redis_url_becomes_feasts_connection_string(url, connection):
    assert online_store_config(url) == {"type": "redis", "connection_string": connection}


@pytest.mark.parametrize("url, message", [
    ("postgresql://db/feast", "must be a redis:// or rediss:// URL, not postgresql"),
    ("127.0.0.1:6379", "must be a redis:// or rediss:// URL"),
    ("redis://cache:6379/zero", "the database after the port is a number"),
    ("redis://:a,b@cache", "password holding a comma"),
])
def test_a_bad_online_store_url_is_one_config_error(url, message):
    with pytest.raises(ConfigError, match=message):
        online_store_config(url)


def test_a_postgres_url_becomes_a_sql_registry_and_anything_else_is_refused():
    config = registry_config("postgresql://feast@db:5432/feast")
    assert (config["registry_type"], config["path"]) == ("sql", "postgresql://feast@db:5432/feast")
    assert config["sqlalchemy_config_kwargs"]["pool_pre_ping"] is True
    with pytest.raises(ConfigError, match="must be a postgresql:// URL, not sqlite"):
        registry_config("sqlite:///registry.db")


def test_unset_variables_leave_the_repositorys_file_alone():
    raw = {"project": "p", "registry": "x/registry.db", "online_store": {"type": "sqlite", "path": "x/online.db"}}
    assert with_team_stores(raw, None, None) == raw
    both = with_team_stores(raw, "postgresql://db/feast", "redis://cache:6379")
    assert both["registry"]["registry_type"] == "sql" and both["online_store"]["type"] == "redis"
    assert raw["online_store"]["type"] == "sqlite"  # the caller's dict is not changed


@pytest.mark.parametrize("path, moved", [
    ("../data/features/customer_profile.parquet", "s3://bucket/feast/customer_profile.parquet"),
    ("data/balance.parquet", "s3://bucket/feast/balance.parquet"),
    ("/abs/balance.parquet", None),  # a source naming its own place keeps it
    ("s3://other/balance.parquet", None),
])
def test_relative_sources_move_under_the_source_uri(path, moved):
    assert source_location(path, "s3://bucket/feast/") == moved
    assert source_location(path, None) is None


def test_a_source_uri_that_is_not_s3_is_refused():
    with pytest.raises(ConfigError, match="MLOPS_FEAST_SOURCE_URI must be an s3://"):
        source_location("data/x.parquet", "/mnt/features")


def test_the_environment_decides_the_stores_the_adapter_opens(tmp_path, monkeypatch):
    repo = make_repo(tmp_path, balances())
    local = features.load_config(repo, tmp_path / "home")
    assert local.online_store.type == "sqlite" and local.registry.registry_type == "file"
    monkeypatch.setenv("MLOPS_FEAST_REGISTRY", "postgresql://feast@db:5432/feast")
    monkeypatch.setenv("MLOPS_FEAST_ONLINE_STORE", "redis://cache:6379/1")
    team = features.load_config(repo, tmp_path / "home")  # nothing connects yet: only the config
    assert (team.registry.registry_type, team.online_store.type) == ("sql", "redis")
    assert team.online_store.connection_string == "cache:6379,db=1"
    monkeypatch.setenv("MLOPS_FEAST_ONLINE_STORE", "memcached://cache")
    with pytest.raises(ConfigError, match="^MLOPS_FEAST_ONLINE_STORE must be a redis://"):
        features.load_config(repo, tmp_path / "home")


def test_apply_registers_sources_under_the_source_uri_with_the_s3_endpoint(tmp_path, monkeypatch):
    repo = make_repo(tmp_path, balances())
    monkeypatch.setenv("MLOPS_FEAST_SOURCE_URI", "s3://bucket/feast")
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    store = features.open_store(repo, tmp_path / "home")
    features.apply_repo(store, repo)  # the local registry file: nothing here talks to S3
    source = store.get_feature_view("balance").batch_source
    assert (source.path, source.s3_endpoint_override) == ("s3://bucket/feast/balance.parquet", "http://127.0.0.1:9")
