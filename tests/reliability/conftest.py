"""Fixtures the reliability tests share with the integration tests, imported rather than copied."""

from tests.integration.test_cli import cli_in_process, workdir  # noqa: F401  (re-exported as fixtures)
from tests.integration.test_serving import registered, store  # noqa: F401  (a registered v1 and v2)
