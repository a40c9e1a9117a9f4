"""The in-process CLI runner, for every module of this folder (defined beside run_cli)."""

from tests.integration.test_cli import cli_in_process  # noqa: F401  (re-exported as a fixture)
