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


# -- a trained and promoted model, built once per session ------------------------------------------

CHAMPION_MODEL = "churn-champion"


def champion_config(home: Path, **sections: object) -> dict:
    """The raw pipeline config of the champion template, its files under `home`."""
    from tests.timing import LENIENT_PROMOTION

    return {
        "dataset": {"uri": str(home / "train.parquet"), "target": "churned", "timestamp": "event_time"},
        "model": {"name": CHAMPION_MODEL, "params": {"max_iter": 30}},
        "validation": {"min_rows": 100},
        "serving": {"prediction_log_uri": str(home / "log")},
        "monitoring": {"min_rows": 200},
        "rollback": {"enabled": False},
        "promotion": LENIENT_PROMOTION,
        **sections,
    }


SPEND_CHAMPION_MODEL = "spend-champion"


def spend_champion_config(home: Path, **sections: object) -> dict:
    """The raw pipeline config of the regressor's champion template (configs/spend.yaml's shape)."""
    from tests.timing import LENIENT_PROMOTION

    return {
        "dataset": {"uri": str(home / "train.parquet"), "target": "monthly_spend", "timestamp": "event_time"},
        "model": {"name": SPEND_CHAMPION_MODEL, "task": "regression",
                  "estimator": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 60}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"min_metrics": {"r2": 0.7}, "max_metrics": {"rmse": 12.0}},
        "serving": {"prediction_log_uri": str(home / "log")},
        "monitoring": {"min_rows": 200, "max_performance_drop": 2.0},
        "rollback": {"enabled": False},
        "promotion": {**LENIENT_PROMOTION, "primary_metric": "rmse"},
        **sections,
    }


def _promoted_template(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path, name: str, frame: object, raw_config: object,
) -> Iterator[Path]:
    """A home holding `frame` as train.parquet and v1 trained on it and promoted by the deploy flow."""
    from flows.deploy import deploy
    from flows.train import train
    from mlops.config import parse_config
    from mlops.data import write_frame

    home = tmp_path_factory.mktemp(name)
    shutil.copy(mlflow_template, home / "mlflow.db")
    write_frame(frame, str(home / "train.parquet"))
    config = parse_config(raw_config(home))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        assert train(config=config, return_state=True).is_completed()
        assert deploy(config=config).status == "promoted"
    files = _files_under(home)
    yield home
    # Copies are private: a test that wrote through to the template would change what later tests start from.
    assert _files_under(home) == files, "a test wrote into the champion template instead of its copy"


@pytest.fixture(scope="session")
def champion_template(prefect_api: str, mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home where v1 of CHAMPION_MODEL was trained (3,000 rows) and promoted by the deploy flow.

    Training is what flow tests spend their time on: they copy this home (`champion_store`)
    instead of training their own champion.
    """
    from mlops.local.simulate import simulate_churn

    yield from _promoted_template(
        tmp_path_factory, mlflow_template, "champion-template", simulate_churn(3000, seed=51), champion_config
    )


@pytest.fixture(scope="session")
def spend_champion_template(
    prefect_api: str, mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The regressor's counterpart of `champion_template`: v1 of SPEND_CHAMPION_MODEL (3,000 rows), promoted."""
    from mlops.local.simulate import simulate_spend

    yield from _promoted_template(
        tmp_path_factory, mlflow_template, "spend-champion-template", simulate_spend(3000, seed=51),
        spend_champion_config,
    )


def _files_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def repoint_store(db: Path, old: Path, new: Path) -> None:
    """Make a copied MLflow SQLite store name its own folder: the store keeps absolute paths
    (experiment and run artifact locations, model sources, data URIs in tags and params)."""
    import sqlite3
    from contextlib import closing

    before, after = f"{old}/", f"{new}/"
    with closing(sqlite3.connect(db)) as con, con:
        tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in con.execute(f"PRAGMA table_info('{table}')")]:
                con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                            f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (before, after, before))


def _private_copy(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A copy of a champion template (store, artifacts, data), exported the way users configure it."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    home = tmp_path / "home"
    shutil.copytree(template, home)
    repoint_store(home / "mlflow.db", template, home)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow caches each run's artifact location in the process by run id, whatever the store:
    # the copy holds the template's run ids, so the cache would send its writes to the template.
    tracking_utils._artifact_repos_cache.clear()
    return home, uri


@pytest.fixture
def champion_store(champion_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict]]:
    """A private copy of the champion template; (tracking uri, raw config naming the copy's files)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    home, uri = _private_copy(champion_template, tmp_path, monkeypatch)
    yield uri, champion_config(home)
    tracking_utils._artifact_repos_cache.clear()


@pytest.fixture
def spend_champion_store(
    spend_champion_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict]]:
    """A private copy of the regressor's champion template; (tracking uri, raw config naming its files)."""
    from mlflow.tracking._tracking_service import utils as tracking_utils

    home, uri = _private_copy(spend_champion_template, tmp_path, monkeypatch)
    yield uri, spend_champion_config(home)
    tracking_utils._artifact_repos_cache.clear()
