"""`stack up` applies the feature repository first: one line, and a broken repository never stops the stack."""

from __future__ import annotations

from pathlib import Path

from mlops.config import Settings
from mlops.local import stack
from tests.feature_repo import balances, make_repo

REPO = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, repo: Path) -> Settings:
    return Settings(MLOPS_HOME=str(tmp_path / "home"), MLOPS_FEATURE_REPO=str(repo))


def test_a_repository_is_applied_and_reported_in_one_line(tmp_path):
    repo = make_repo(tmp_path, balances())
    line = stack.apply_features(_settings(tmp_path, repo), tmp_path)
    assert line == f"features: applied {repo}: 1 feature views (balance), 1 feature services (scorer)"
    assert (tmp_path / "home" / "feast" / "registry.db").is_file()


def test_the_projects_own_repository_applies(tmp_path):
    # The default MLOPS_FEATURE_REPO (features) is read relative to the project directory.
    line = stack.apply_features(Settings(MLOPS_HOME=str(tmp_path / "home")), REPO)
    assert line.startswith(f"features: applied {REPO / 'features'}: 2 feature views (customer_activity, customer_profile)")


def test_without_a_repository_it_is_skipped(tmp_path):
    assert stack.apply_features(_settings(tmp_path, Path("features")), tmp_path) == (
        f"features: skipped: no {tmp_path / 'features' / 'feature_store.yaml'}")


def test_a_broken_repository_is_reported_not_raised(tmp_path):
    repo = make_repo(tmp_path, balances())
    (repo / "definitions.py").write_text("from feast import Nope\n")
    line = stack.apply_features(_settings(tmp_path, repo), tmp_path)
    assert line.startswith(f"features: apply FAILED ({repo}): {repo / 'definitions.py'}: cannot load feature definitions")
    assert "the rest of the stack is up" in line and "\n" not in line


def test_an_invalid_store_config_is_reported_not_raised(tmp_path):
    repo = make_repo(tmp_path, balances())
    (repo / "feature_store.yaml").write_text("project: x\nonline_store: {type: nosuchstore}\n")
    line = stack.apply_features(_settings(tmp_path, repo), tmp_path)
    assert line.startswith(f"features: apply FAILED ({repo}): {repo / 'feature_store.yaml'}: invalid feature store config")
