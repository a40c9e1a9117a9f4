"""`mlops ci` as a pull request runs it: a temporary git repository holding a catalogue, a change to
one config, and the report; and `mlops train` refusing a model that fails a behavioural test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from tests.conftest import CHAMPION_MODEL
from tests.integration.test_cli import (
    base_config,
    first_error_line,
    run_cli,
    versions,
    write_config,
)

CALLS_RAISE_CHURN = {"name": "calls-raise-churn", "kind": "directional", "column": "support_calls", "delta": 2}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def model_config(name: str, **sections) -> dict:
    config = base_config("churn.parquet", **sections)
    config["model"] = {**config["model"], "name": name, "params": {"max_iter": 20}}
    return config


@pytest.fixture
def catalogue_repo(tmp_path, mlflow_template) -> Path:
    """A git repository with two catalogue models on one small dataset, committed; an empty
    MLflow store beside it stands for the team's registry."""
    import shutil

    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    write_frame(simulate_churn(1500, seed=31), str(tmp_path / "churn.parquet"))
    (tmp_path / "configs").mkdir()
    for name in ("alpha", "beta"):
        config = model_config(name, behaviour={"tests": [CALLS_RAISE_CHURN]})
        (tmp_path / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(config))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "configs", "churn.parquet")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def test_ci_checks_the_changed_model_only_and_writes_nothing_to_the_registry(catalogue_repo):
    path = catalogue_repo / "configs" / "beta.yaml"
    config = yaml.safe_load(path.read_text())
    config["gates"]["min_metrics"]["roc_auc"] = 0.55
    path.write_text(yaml.safe_dump(config))
    git(catalogue_repo, "commit", "-q", "-am", "beta: looser gate")

    proc = run_cli(["ci", "--changed-since", "HEAD~1", "--json", "--out", "report/ci.md"], catalogue_repo, None)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["status"], report["exit_code"], report["changed_since"]) == ("passed", 0, "HEAD~1")
    assert report["unchanged"] == ["alpha"]
    [beta] = report["models"]
    assert (beta["name"], beta["config_file"], beta["status"], beta["exit_code"]) == ("beta", "configs/beta.yaml", "passed", 0)
    assert beta["metrics"]["roc_auc"] > 0.55
    assert [(g["metric"], g["threshold"], g["passed"]) for g in beta["gates"]] == [("roc_auc", 0.55, True)]
    assert beta["behaviour"]["passed"] is True
    assert [t["name"] for t in beta["behaviour"]["tests"]] == ["calls-raise-churn"]
    assert beta["comparison"]["verdict"] == "no champion to compare"
    assert beta["summary"][0] == "**passed**"
    # The card of the version trained in the throwaway store, in brief (metric with its interval).
    assert beta["card_summary"].startswith("**beta v1** (classification)") and "roc_auc" in beta["card_summary"]

    markdown = (catalogue_repo / "report" / "ci.md").read_text()
    assert markdown.startswith("# Model CI: passed")
    assert "## beta (`configs/beta.yaml`)" in markdown and "## alpha" not in markdown
    assert "| calls-raise-churn | directional | pass |" in markdown
    assert "### Model card\n\n**beta v1**" in markdown
    # The team's registry (MLFLOW_TRACKING_URI) was read, never written.
    client = MlflowClient(tracking_uri=f"sqlite:///{catalogue_repo / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_registered_models() == []


def test_ci_refuses_a_broken_changed_config_with_one_line_exit_2(catalogue_repo):
    path = catalogue_repo / "configs" / "alpha.yaml"
    config = yaml.safe_load(path.read_text())
    config["behaviour"]["tests"][0]["delta"] = 0
    path.write_text(yaml.safe_dump(config))

    proc = run_cli(["ci", "--changed-since", "HEAD"], catalogue_repo, None)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: alpha: config {Path('configs') / 'alpha.yaml'}: invalid value for "
                      "'behaviour.tests.0.delta': must be a finite non-zero number"]
    assert "# Model CI: failed (exit 2)" in proc.stdout and "**invalid** (exit 2)" in proc.stdout


def test_ci_unknown_ref_exits_2(catalogue_repo):
    proc = run_cli(["ci", "--changed-since", "no-such-ref", "--json"], catalogue_repo, None)
    assert proc.returncode == 2
    assert first_error_line(proc.stderr).startswith("error: --changed-since: unknown git ref 'no-such-ref'")
    assert json.loads(proc.stdout)["exit_code"] == 2


def test_train_refuses_a_failed_behavioural_test_with_exit_4(catalogue_repo, cli_in_process):
    wrong_way = {**CALLS_RAISE_CHURN, "name": "calls-lower-churn", "direction": "decrease"}
    cfg = write_config(catalogue_repo, base_config("churn.parquet", behaviour={"tests": [wrong_way]}))
    proc = cli_in_process(["train", "--config", cfg, "--json"], catalogue_repo)
    assert proc.returncode == 4, proc.stderr
    assert first_error_line(proc.stderr).startswith("error: behavioural test failed: 'calls-lower-churn' (directional)")
    assert json.loads(proc.stdout)["error_type"] == "BehaviourTestFailed"
    assert versions(catalogue_repo) == []


def test_ci_scores_the_champion_of_a_reachable_registry_on_the_same_holdout(champion_store, tmp_path):
    """The change under review trains a weaker model (2 iterations) on newer data; both versions
    are scored on the rows this run held out, the champion loaded from the team's registry, as
    deploy would compare them."""
    from sklearn.metrics import roc_auc_score

    from mlops.config import parse_config
    from mlops.contract import infer_contract
    from mlops.evaluation import split_frame
    from mlops.registry import Registry

    store, raw = champion_store  # v1 of CHAMPION_MODEL (30 iterations) is the champion
    (tmp_path / "repo" / "configs").mkdir(parents=True)
    newer = simulate_churn(2000, seed=77)
    write_frame(newer, str(tmp_path / "repo" / "newer.parquet"))
    raw["model"]["params"] = {"max_iter": 2}
    raw["dataset"]["uri"] = str(tmp_path / "repo" / "newer.parquet")
    (tmp_path / "repo" / "configs" / "champ.yaml").write_text(yaml.safe_dump(raw))
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    recorded = json.loads(client.get_model_version(CHAMPION_MODEL, "1").tags["metrics"])

    proc = run_cli(["ci", "--json"], tmp_path / "repo", None, MLFLOW_TRACKING_URI=store)
    assert proc.returncode == 0, proc.stderr
    [check] = json.loads(proc.stdout)["models"]
    comparison = check["comparison"]
    # The rows the run held out (the train flow's split of the newer data), scored here with scikit-learn.
    config = parse_config(raw)
    contract = infer_contract(newer, "churned", "event_time", "classification")
    _, holdout = split_frame(newer, contract, config.split, config.model.seed)
    champion = Registry(store).load_model(CHAMPION_MODEL, "1")
    expected = roc_auc_score(holdout["churned"], champion.predict_proba(holdout.drop(columns=["churned"]))[:, 1])
    assert (comparison["metric"], comparison["champion_version"]) == ("roc_auc", "1")
    assert comparison["note"] == f"both scored on this run's holdout ({len(holdout)} rows)"
    assert comparison["champion"] == pytest.approx(expected, abs=1e-6)
    assert comparison["champion"] != pytest.approx(recorded["roc_auc"], abs=1e-4)  # not the recorded value
    # The challenger's score on those rows is its own evaluation's: the same rows.
    assert comparison["challenger"] == pytest.approx(check["metrics"]["roc_auc"], abs=1e-6)
    assert comparison["challenger"] < comparison["champion"]
    assert comparison["verdict"].startswith(f"roc_auc {comparison['challenger']:.4f} vs champion v1")
    assert comparison["verdict"].endswith(f"worse by {comparison['champion'] - comparison['challenger']:.4f}")
    # Read, never written: the champion's store still holds its one version.
    assert [str(v.version) for v in client.search_model_versions(f"name = '{CHAMPION_MODEL}'")] == ["1"]
