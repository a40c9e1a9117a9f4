"""Fixtures shared by the reliability tests: the CLI's working directory comes from test_cli."""

from tests.integration.test_cli import workdir  # noqa: F401  (re-exported as a fixture)
