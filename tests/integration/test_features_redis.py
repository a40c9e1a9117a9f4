"""The adapter's direct Redis reader gives exactly what Feast's `get_online_features` gives.

A throwaway repository (tests/store_fed.py) is applied and materialized into the machine's Redis
under a project name of its own, whose keys are deleted afterwards. The same lookups are made
through the reader (`ServiceSchema.reader`, what serving uses) and through Feast (the same schema
without it), and compared: values, per-row problems and statuses.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mlops import features
from tests import store_fed
from tests.integration.test_serving_entities import _address, _drop_project, _project_keys
from tests.store_fed import FEATURES, SERVICE, STALE, UNKNOWN

CUSTOMERS = 30


@pytest.fixture
def redis_project(tmp_path, redis_client):
    project = f"mlops_test_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    repo = store_fed.make_store_repo(tmp_path, CUSTOMERS, project=project, online_store=store_fed.redis_store(_address()), now=now)
    store = store_fed.applied_store(repo, tmp_path / "home", now)
    try:
        assert _project_keys(redis_client, project) > 0  # materialized into Redis
        yield store, now
    finally:
        _drop_project(redis_client, project)
    assert _project_keys(redis_client, project) == 0


def _both_ways(store, rows, now):
    schema = features.describe_service(store, SERVICE)
    assert schema.reader is not None  # a plain Redis store is read directly
    direct = features.online_features(store, schema, rows, now=now)
    through_feast = features.online_features(store, dataclasses.replace(schema, reader=None), rows, now=now)
    return direct, through_feast


def test_the_direct_reader_equals_feast_for_every_kind_of_row(redis_project):
    store, now = redis_project
    # Fresh customers, one twice, and every odd one: unknown, stale (activity 20 days old, TTL 10
    # days) and a profile without activity.
    ids = [*range(1, CUSTOMERS + 1), 3, UNKNOWN, STALE, store_fed.PROFILE_ONLY]
    rows = [{"customer_id": i} for i in ids]
    direct, through_feast = _both_ways(store, rows, now)
    assert direct.columns == through_feast.columns
    assert direct.problems == through_feast.problems
    assert direct.statuses == through_feast.statuses
    assert [s.status for s in direct.statuses[-4:]] == ["ok", "unknown_entity", "stale", "missing_feature"]
    assert {s.status for s in direct.statuses[:CUSTOMERS]} == {"ok"}
    # Values are there and typed as Feast types them (not just None on both sides).
    assert isinstance(direct.columns["age"][0], int) and isinstance(direct.columns["plan"][0], str)
    assert isinstance(direct.columns["balance"][0], float) and isinstance(direct.columns["calls"][0], int)
    assert direct.columns["age"][2] == direct.columns["age"][CUSTOMERS]  # customer 3 twice, the same values
    assert [direct.columns[f][CUSTOMERS + 1] for f in FEATURES] == [None] * len(FEATURES)  # unknown
    assert direct.columns["balance"][CUSTOMERS + 2] is not None  # a stale value is returned, flagged
    assert direct.columns["balance"][CUSTOMERS + 3] is None and direct.columns["age"][CUSTOMERS + 3] is not None


def test_the_direct_reader_puts_the_ttl_boundary_where_feast_does(redis_project):
    store, now = redis_project
    stamped = now - timedelta(days=20)  # STALE's activity row
    for at, expected in ((stamped + timedelta(days=10), "ok"), (stamped + timedelta(days=10, seconds=1), "stale")):
        direct, through_feast = _both_ways(store, [{"customer_id": STALE}], at)
        assert [s.status for s in direct.statuses] == [expected]
        assert direct.statuses == through_feast.statuses and direct.problems == through_feast.problems
