"""Fixtures for every module of this folder: the in-process CLI runner (defined beside run_cli) and the
machine's Redis (defined beside the team feature store's tests)."""

from tests.integration.test_cli import cli_in_process  # noqa: F401  (re-exported as a fixture)
from tests.integration.test_feature_store_team import redis_client  # noqa: F401  (re-exported as a fixture)
