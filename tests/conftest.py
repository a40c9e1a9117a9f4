"""Shared fixtures: real servers started once per session, fresh MLflow stores per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# Quiet third-party telemetry and progress bars for every test and every child process.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]

# A test's tier follows its folder: `-m unit` is the fast loop (`make test-fast`, no server
# process); flows start a Prefect test server; integration covers every tier that starts real
# processes (servers, the CLI, the serving app) or kills them.
_TIER_BY_FOLDER = {
    "unit": "unit",
    "flows": "flows",
    "integration": "integration",
    "reliability": "integration",
    "e2e": "integration",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = REPO / "tests"
    for item in items:
        try:
            folder = Path(item.path).resolve().relative_to(tests).parts[0]
        except ValueError:
            continue
        tier = _TIER_BY_FOLDER.get(folder)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlops-home")


@pytest.fixture(scope="session")
def prefect_server(session_home: Path) -> Iterator[str]:
    """A real `prefect server start` on a free loopback port; yields its API URL."""
    from mlops.local import stack

    service = stack.prefect_service(session_home, "127.0.0.1", stack.free_port())
    proc = stack.start(service, session_home, timeout=180)
    try:
        yield f"{service.url}/api"
    finally:
        if proc is not None:
            stack.stop_pid(proc.pid)


@pytest.fixture(scope="session")
def prefect_api(prefect_server: str) -> Iterator[str]:
    """Point in-process flows at the session's Prefect server."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect binds its console log handler to the sys.stderr of the moment it sets up logging:
    # do it now, not inside a test whose captured stderr (capsys) is closed when the test ends.
    ensure_logging_setup()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server
        # Ship buffered run logs while the server is still up, not at interpreter exit.
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite store; copying it is much faster than migrating."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh embedded MLflow store for one test, exported the way users configure it."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(mlflow_template, home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
