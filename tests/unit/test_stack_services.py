"""Service definitions of `stack up`: local defaults unchanged, PostgreSQL/S3 by settings alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import Settings
from mlops.errors import ConfigError
from mlops.local import stack

HOME = Path("/srv/mlops")


def _settings(**env: str) -> Settings:
    return Settings(MLOPS_HOME=str(HOME), **env)


def _value(command: list[str], option: str) -> str:
    [token] = [t for t in command if t.startswith(f"{option}=")]
    return token.removeprefix(f"{option}=")


def test_local_defaults_stay_sqlite_and_local_files():
    prefect, mlflow = stack.local_services(_settings())
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in prefect.env
    assert _value(mlflow.command, "--backend-store-uri") == f"sqlite:///{HOME / 'mlflow.db'}"
    assert "--no-serve-artifacts" in mlflow.command and "MLFLOW_BACKEND_STORE_URI" not in mlflow.env


def test_team_settings_put_both_servers_on_postgres_and_artifacts_in_s3():
    db_password = "s3cret"
    prefect, mlflow = stack.local_services(_settings(
        MLOPS_PREFECT_DATABASE_URL="postgresql+asyncpg://mlops@db:5432/prefect",
        MLOPS_MLFLOW_BACKEND_URI=f"postgresql://mlops:{db_password}@db:5432/mlflow",
        MLOPS_MLFLOW_ARTIFACTS_DESTINATION="s3://bucket/mlflow",
        MLOPS_MLFLOW_ALLOWED_HOSTS="mlflow.example.com,mlflow.example.com:*",
        MLOPS_S3_ENDPOINT_URL="http://minio:9000",
    ))
    assert prefect.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://mlops@db:5432/prefect"
    command = mlflow.command
    assert _value(command, "--artifacts-destination") == "s3://bucket/mlflow"
    assert "--serve-artifacts" in command and "--no-serve-artifacts" not in command
    assert _value(command, "--allowed-hosts") == "mlflow.example.com,mlflow.example.com:*"
    # The backend URI (with its password) is passed in the environment, never on the command line.
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"].endswith("@db:5432/mlflow")
    assert not any(db_password in part for part in command)
    assert mlflow.env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow.health_url.endswith("/health")


@pytest.mark.parametrize(
    "env",
    [{"MLOPS_MLFLOW_BACKEND_URI": "postgresql://db/mlflow"}, {"MLOPS_MLFLOW_ARTIFACTS_DESTINATION": "s3://b/p"}],
    ids=["backend-only", "artifacts-only"],
)
def test_half_a_team_mlflow_config_is_refused(env):
    with pytest.raises(ConfigError, match="set both or neither"):
        stack.local_services(_settings(**env))


def test_a_setting_that_looks_like_an_option_stays_the_value_of_its_own():
    # Each value is joined to its option (`--host=...`): a setting starting with '-' cannot
    # become another option of the server it starts.
    settings = _settings(MLOPS_STACK_HOST="--workers=64", MLOPS_CATALOGUE="--config=/etc/passwd",
                         MLOPS_MLFLOW_BACKEND_URI="postgresql://db/mlflow",
                         MLOPS_MLFLOW_ARTIFACTS_DESTINATION="--default-artifact-root=/tmp/x",
                         MLOPS_MLFLOW_ALLOWED_HOSTS="--dev")
    services = stack.all_services(settings, Path("/srv/project"))
    hostile = {"--workers=64", "--config=/etc/passwd", "--default-artifact-root=/tmp/x", "--dev"}
    for service in services:
        assert not hostile & set(service.command), service.command
    mlflow = services[1]
    assert _value(mlflow.command, "--artifacts-destination") == "--default-artifact-root=/tmp/x"
    assert _value(mlflow.command, "--allowed-hosts") == "--dev"
    assert _value(services[3].command, "--catalogue") == "/srv/project/--config=/etc/passwd"
