"""`mlops deploy / rollback / history / models` as users run them: documented exit codes.

One call per exit code (0, 2, 5) runs the real command as a subprocess; the other calls of the
scenario run the CLI in this process on the same directory (`cli_in_process`, see test_cli.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from tests.integration.test_cli import (
    MODEL,
    RunCli,
    base_config,
    first_error_line,
    run_cli,
    write_config,
)
from tests.timing import LENIENT_PROMOTION


@pytest.fixture
def workdir(tmp_path, mlflow_template) -> Path:
    """A fresh project directory: an empty MLflow store and a churn dataset (as in test_cli.py)."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    write_frame(simulate_churn(2500, seed=21), str(tmp_path / "churn.parquet"))
    return tmp_path


def deploy_config(**overrides) -> dict:
    # No serving app in these tests: the post-deployment watch is off.
    overrides["promotion"] = {**LENIENT_PROMOTION, **overrides.get("promotion", {})}
    return base_config("churn.parquet", rollback={"enabled": False}, **overrides)


def run_json(args: list[str], run: RunCli, expected: int):
    """`run` is `real` (the command as a subprocess) or `cli_in_process`."""
    proc = run([*args, "--json"])
    assert proc.returncode == expected, proc.stderr
    return json.loads(proc.stdout), proc


def test_deploy_rollback_history_and_models(workdir, prefect_server, cli_in_process):
    def real(args):
        return run_cli(args, workdir, prefect_server)

    def here(args):
        return cli_in_process(args, workdir)

    cfg = write_config(workdir, deploy_config())
    assert here(["train", "--config", cfg]).returncode == 0

    first, _ = run_json(["deploy", "--config", cfg], real, 0)
    assert (first["status"], first["champion_version"], first["exit_code"]) == ("promoted", "1", 0)
    assert first["metrics"]["challenger"]["roc_auc"] > 0.6 and len(first["audit_records"]) == 1

    # Nothing to roll back to yet.
    proc = here(["rollback", "--config", cfg])
    assert proc.returncode == 2
    assert first_error_line(proc.stderr) == f"error: model {MODEL} has no 'previous-champion' version to roll back to"

    # Same data and config: an equal challenger is promoted; then rolled back by hand.
    assert here(["train", "--config", cfg]).returncode == 0
    second, _ = run_json(["deploy", "--config", cfg], here, 0)
    assert (second["champion_version"], second["previous_champion_version"]) == ("2", "1")
    rolled, _ = run_json(["rollback", "--config", cfg, "--reason", "bad canary"], here, 0)
    assert (rolled["from_version"], rolled["to_version"], rolled["reason"]) == ("2", "1", "bad canary")

    # A worse challenger (a DummyClassifier, trained without gates) is refused: exit 5.
    dummy = write_config(workdir, deploy_config(model={"name": MODEL, "estimator": "sklearn.dummy.DummyClassifier"}, gates={}), "dummy.yaml")
    assert here(["train", "--config", dummy]).returncode == 0
    refused, proc = run_json(["deploy", "--config", cfg], real, 5)
    assert (refused["status"], refused["candidate_version"], refused["champion_version"]) == ("refused", "3", "1")
    assert refused["exit_code"] == 5
    line = first_error_line(proc.stderr)
    assert line.startswith(f"error: promotion refused: {MODEL} v3: ") and "roc_auc" in line
    human = here(["deploy", "--config", cfg])
    assert human.returncode == 5 and human.stdout.startswith(f"refused: model {MODEL} version 3 not promoted")

    history, _ = run_json(["history", "--config", cfg], here, 0)
    assert [(r["action"], r["from_version"], r["to_version"]) for r in history] == [
        ("promoted", None, "1"), ("promoted", "1", "2"), ("rolled-back", "2", "1"), ("refused", "1", "3"), ("refused", "1", "3"),
    ]
    assert history[3]["evidence"]["metrics"]["champion"]["roc_auc"] > history[3]["evidence"]["metrics"]["challenger"]["roc_auc"]
    table = here(["history", "--config", cfg])
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].startswith("time (UTC)") and len(lines) == 6 and "bad canary" in lines[3]

    models, _ = run_json(["models", "--config", cfg], here, 0)
    assert [(m["version"], m["aliases"], m["last_action"]) for m in models] == [
        ("1", ["champion"], "promoted"), ("2", ["rolled-back"], "rolled-back"), ("3", ["challenger"], "refused"),
    ]
    assert models[0]["key_metrics"]["roc_auc"] > 0.6
    listing = here(["models", "--config", cfg])
    assert listing.returncode == 0
    assert "v1" in listing.stdout and "champion" in listing.stdout and "roc_auc" in listing.stdout.splitlines()[1]


def test_deploy_usage_errors_exit_2(workdir, prefect_server, cli_in_process):
    cfg = write_config(workdir, deploy_config())
    proc = run_cli(["deploy", "--config", cfg, "--json"], workdir, prefect_server)
    assert proc.returncode == 2
    assert first_error_line(proc.stderr) == f"error: model {MODEL} has no 'challenger' version to deploy (train one first, or pass --version)"
    assert json.loads(proc.stdout)["exit_code"] == 2

    bad = write_config(workdir, deploy_config(promotion={"primary_metric": "rmse"}), "bad.yaml")
    proc = cli_in_process(["deploy", "--config", bad], workdir)
    assert proc.returncode == 2 and "promotion.primary_metric: unknown metric 'rmse'" in first_error_line(proc.stderr)

    proc = cli_in_process(["deploy", "--config", cfg, "--version", "x"], workdir)
    assert proc.returncode == 2 and "--version" in proc.stderr


def test_history_and_models_of_an_unknown_model(workdir, cli_in_process):
    cfg = write_config(workdir, deploy_config())
    history = run_cli(["history", "--config", cfg, "--json"], workdir, None)
    assert history.returncode == 0 and json.loads(history.stdout) == []
    models = cli_in_process(["models", "--config", cfg], workdir)
    assert models.returncode == 0 and models.stdout.strip() == f"model {MODEL} has no registered versions"
