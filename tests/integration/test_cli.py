"""The `mlops` command as users run it: every documented exit code (a store-fed model's bad input too).

One case per exit code runs the real command as a subprocess (the entry point, the temporary
Prefect server, signals); the other cases of the same code run `mlops.cli.main` in this process
with the same environment and working directory (`cli_in_process`), which saves a Python start
and the imports of Prefect and MLflow per case.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlops import features
from mlops.data import write_frame
from mlops.local.simulate import simulate_churn
from mlops.local.stack import free_port
from tests.feature_repo import STORE_YAML, labelled_balances, make_repo

REPO = Path(__file__).resolve().parents[2]
MLOPS = str(Path(sys.executable).parent / "mlops")
MODEL = "cli-churn"


def base_config(data_uri: str, **overrides) -> dict:
    config = {
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {"name": MODEL, "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100, "rules": [{"column": "age", "min": 18, "max": 100}]},
        "gates": {"min_metrics": {"roc_auc": 0.6}},
    }
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture
def workdir(tmp_path, mlflow_template) -> Path:
    import shutil

    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    write_frame(simulate_churn(2500, seed=21), str(tmp_path / "churn.parquet"))
    return tmp_path


def cli_env(workdir: Path) -> dict[str, str]:
    """What the command is given on top of an environment without PREFECT_, MLFLOW_ or MLOPS_ variables."""
    return {
        "MLOPS_HOME": str(workdir / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        # Nothing listens here, so a developer's own `make up` stack is never picked up.
        "MLOPS_PREFECT_PORT": str(free_port()),
        "MLOPS_MLFLOW_PORT": str(free_port()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
    }


def run_cli(args: list[str], workdir: Path, prefect_api: str | None, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env.update(cli_env(workdir))
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    env.update(env_overrides)
    return subprocess.run([MLOPS, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def cli_in_process(prefect_api, monkeypatch, capsys) -> Iterator[RunCli]:
    """`run_cli` without the subprocess: `mlops.cli.main` here, flows on the session's Prefect server.

    Same arguments, environment and working directory; exit code, stdout and stderr come back as
    a CompletedProcess, so a case asserts the same things whichever way it runs.
    """
    from mlops import cli

    def run(args: list[str], workdir: Path, **env_overrides: str) -> subprocess.CompletedProcess:
        for key in [k for k in os.environ if k.startswith(("MLFLOW_", "MLOPS_"))]:
            monkeypatch.delenv(key)
        for key, value in {**cli_env(workdir), "PREFECT_API_URL": prefect_api, **env_overrides}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(workdir)
        capsys.readouterr()
        code = cli.main(args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([MLOPS, *args], code, out, err)

    with process_state_kept():
        yield run


@contextmanager
def process_state_kept() -> Iterator[None]:
    """What a command changes in its process and the test session must get back: the SIGTERM
    handler it installs, the filters it puts on console log handlers (they drop tracebacks)."""
    from mlops.progress import stderr_handlers

    sigterm = signal.getsignal(signal.SIGTERM)
    filters = {handler: list(handler.filters) for handler in stderr_handlers()}
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        for handler, kept in filters.items():
            handler.filters[:] = kept


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> str:
    path = workdir / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def versions(workdir: Path) -> list[str]:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return [str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")]


def first_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert lines, stderr
    return lines[0]


def test_train_json_success(workdir, prefect_server):
    cfg = write_config(workdir, base_config("churn.parquet"))
    proc = run_cli(["train", "--config", cfg, "--json"], workdir, prefect_server)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "registered"
    assert result["model_name"] == MODEL and result["model_version"] == "1"
    assert len(result["data_fingerprint"]) == 64 and result["run_id"]
    assert result["metrics"]["roc_auc"] > 0.6
    assert versions(workdir) == ["1"]


def test_train_human_output_and_data_override(workdir, cli_in_process):
    write_frame(simulate_churn(2500, seed=22), str(workdir / "other.csv"))
    cfg = write_config(workdir, base_config("does-not-exist.parquet"))
    proc = cli_in_process(["train", "--config", cfg, "--data", "other.csv"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert f"registered: model {MODEL} version 1" in proc.stdout
    assert "roc_auc=" in proc.stdout and "prefect: " in proc.stdout


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["model"].update(colour="red"), "unknown key 'model.colour'"),
        (lambda c: c["split"].update(test_size="big"), "invalid value for 'split.test_size'"),
        (lambda c: c["model"].update(estimator="sklearn.nothing.Here"), "model.estimator"),
        (lambda c: c["dataset"].update(uri="missing.parquet"), "missing.parquet: file not found"),
        (lambda c: c["dataset"].update(target="no_such_column"), "target column 'no_such_column'"),
        (lambda c: c["gates"].update(min_metrics={"roc_auc": -1}), "gates.min_metrics.roc_auc"),
    ],
    ids=["unknown-key", "wrong-type", "bad-estimator", "missing-file", "missing-target", "negative-gate"],
)
def test_bad_config_or_data_exits_2(workdir, cli_in_process, mutate, expected):
    config = base_config("churn.parquet")
    mutate(config)
    proc = cli_in_process(["train", "--config", write_config(workdir, config), "--json"], workdir)
    assert proc.returncode == 2, proc.stderr
    assert expected in first_error_line(proc.stderr)
    assert json.loads(proc.stdout)["exit_code"] == 2
    assert versions(workdir) == []


def test_empty_file_exits_2(workdir, prefect_server):
    """Exit code 2 through the real command: bad data found by the flow's first task."""
    (workdir / "empty.csv").write_text("")
    cfg = write_config(workdir, base_config("empty.csv"))
    proc = run_cli(["train", "--config", cfg], workdir, prefect_server)
    assert proc.returncode == 2
    assert "empty.csv: file is empty" in first_error_line(proc.stderr)
    assert versions(workdir) == []


def test_validation_failure_exits_3(workdir, prefect_server):
    frame = simulate_churn(2500, seed=23)
    frame["age"] = frame["age"].astype(str)  # wrong dtype
    write_frame(frame, str(workdir / "strings.parquet"))
    cfg = write_config(workdir, base_config("strings.parquet"))
    proc = run_cli(["train", "--config", cfg], workdir, prefect_server)
    assert proc.returncode == 3, proc.stderr
    line = first_error_line(proc.stderr)
    assert "data validation failed" in line and "'age'" in line
    assert "Traceback" not in proc.stderr.split(line)[0]
    assert versions(workdir) == []


def test_quality_gate_failure_exits_4(workdir, prefect_server):
    cfg = write_config(workdir, base_config("churn.parquet", gates={"min_metrics": {"roc_auc": 0.999}}))
    proc = run_cli(["train", "--config", cfg], workdir, prefect_server)
    assert proc.returncode == 4, proc.stderr
    assert "quality gate failed" in first_error_line(proc.stderr)
    assert versions(workdir) == []


def test_unexpected_error_exits_1_with_readable_line_first(workdir, prefect_server):
    cfg = write_config(workdir, base_config("churn.parquet"))
    proc = run_cli(["train", "--config", cfg], workdir, prefect_server, MLFLOW_TRACKING_URI="nosuchscheme://x")
    assert proc.returncode == 1
    line = first_error_line(proc.stderr)
    assert "Traceback" not in proc.stderr.split(line)[0]


def test_runs_without_any_prefect_server(workdir):
    cfg = write_config(workdir, base_config("churn.parquet"))
    proc = run_cli(["train", "--config", cfg, "--json"], workdir, prefect_api=None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model_version"] == "1"
    assert "Traceback" not in proc.stderr
    # The temporary server kept its database in the project home.
    assert (workdir / "home" / "prefect" / "prefect.db").exists()


def test_simulate_writes_deterministic_batches(workdir, tmp_path, cli_in_process):
    out_a, out_b = str(tmp_path / "a.csv"), str(tmp_path / "b.parquet")
    for out in (out_a, out_b):
        proc = cli_in_process(["simulate", "--rows", "300", "--drift", "strong", "--seed", "5", "--out", out, "--json"], workdir)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows"] == 300
    from mlops.data import fingerprint_frame, read_frame

    a, b = read_frame(out_a), read_frame(out_b)
    assert a.drop(columns=["event_time"]).equals(b.drop(columns=["event_time"]))
    proc = cli_in_process(["simulate", "--rows", "0", "--out", out_a], workdir)
    assert proc.returncode == 2
    proc = cli_in_process(["simulate", "--rows", "10", "--out", str(tmp_path / "x.txt")], workdir)
    assert proc.returncode == 2 and "unsupported file type" in first_error_line(proc.stderr)
    assert fingerprint_frame(read_frame(out_b)) == fingerprint_frame(simulate_churn(300, "strong", seed=5))


@pytest.mark.parametrize(("action", "how"), [("up", "subprocess"), ("status", "in-process"), ("down", "in-process")])
def test_half_of_the_team_mlflow_settings_is_a_config_error_for_every_stack_action(tmp_path, request, action, how):
    bad = {"MLOPS_MLFLOW_BACKEND_URI": "postgresql://127.0.0.1:5432/test"}
    if how == "subprocess":
        proc = run_cli(["stack", action], tmp_path, None, **bad)
    else:
        proc = request.getfixturevalue("cli_in_process")(["stack", action], tmp_path, **bad)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "error: MLOPS_MLFLOW_BACKEND_URI and MLOPS_MLFLOW_ARTIFACTS_DESTINATION go together: set both or neither"
    )
    assert not (tmp_path / "home" / "run").exists()  # nothing was started


def _group_members(pgid: int) -> list[str]:
    """Living processes in process group `pgid`, from /proc (no psutil): 'pid command' each."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command, rest = stat.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {command}")
    return found


def test_sigterm_ends_train_with_one_line_the_json_a_crashed_run_and_no_child_left(workdir):
    """With no Prefect server, the CLI starts a temporary one; SIGTERM must stop it too."""
    import signal
    import sqlite3

    cfg = write_config(workdir, base_config("churn.parquet"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env.update(MLOPS_HOME=str(workdir / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}",
               MLOPS_PREFECT_PORT=str(free_port()), MLOPS_MLFLOW_PORT=str(free_port()),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", GX_ANALYTICS_ENABLED="false")
    # Its own process group: whatever it starts stays in it, so leftovers can be found after it exits.
    proc = subprocess.Popen([MLOPS, "train", "--config", cfg, "--json"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:  # until the flow is past its first task
            seen.append(line)
            if "load-dataset" in line and "Finished in state Completed" in line:
                break
        assert proc.poll() is None, "".join(seen)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        leftovers = _group_members(proc.pid)
        if leftovers:  # never leave a leaked server running after a failure
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stderr = "".join(seen) + stderr
    assert proc.returncode == 143, stderr[-3000:]
    assert leftovers == []
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: terminated (SIGTERM)"], stderr[-3000:]
    assert "Traceback" not in stderr
    assert json.loads(stdout) == {"status": "failed", "exit_code": 143, "error": "terminated (SIGTERM)",
                                  "error_type": "Terminated"}
    with sqlite3.connect(workdir / "home" / "prefect" / "prefect.db") as db:
        states = [row[0] for row in db.execute("select state_type from flow_run")]
    assert states == ["CRASHED"]
    assert versions(workdir) == []


# -- a store-fed model on bad input ---------------------------------------------------------------
# Each case runs against a real Feast repository in the working directory, applied under the
# command's MLOPS_HOME (tests/feature_repo.py): one line naming the problem, the documented exit
# code, and no version registered. The unreachable store runs the real command (its retries too).


@pytest.fixture
def store_repo(workdir: Path) -> Path:
    """A repository with the `scorer` service, applied where the command will look (workdir/home)."""
    rows, entity, _ = labelled_balances(60, seed=31)
    repo = make_repo(workdir / "store", rows)
    features.apply_repo(features.open_store(repo, workdir / "home"), repo)
    write_frame(entity, str(workdir / "labels.parquet"))
    write_frame(entity.drop(columns="event_time"), str(workdir / "untimed.parquet"))
    return repo


def store_config(repo: Path, uri: str = "labels.parquet", service: str = "scorer") -> dict:
    config = base_config(uri, validation={"min_rows": 50})
    config["dataset"].update(feature_service=service, feature_repo=str(repo))
    return config


def _delete_view(repo: Path, workdir: Path) -> None:
    features.open_store(repo, workdir / "home").delete_feature_view("balance")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ({"service": "nope"}, "error: unknown feature service 'nope' (known: scorer)"),
        ({"delete_view": True}, "error: feature service 'scorer' uses feature view 'balance', which the registry "
                                "does not hold (run `mlops features apply`?)"),
        ({"uri": "untimed.parquet"}, "error: entity frame has no timestamp column 'event_time' "
                                     "(columns: customer_id, churned)"),
    ],
    ids=["missing-service", "missing-view", "no-timestamp"],
)
def test_bad_store_input_exits_2_and_registers_nothing(workdir, store_repo, cli_in_process, case, expected):
    if case.pop("delete_view", False):
        _delete_view(store_repo, workdir)
    cfg = write_config(workdir, store_config(store_repo, **case))
    proc = cli_in_process(["train", "--config", cfg, "--json"], workdir)
    assert proc.returncode == 2, proc.stderr
    assert first_error_line(proc.stderr) == expected
    assert json.loads(proc.stdout)["exit_code"] == 2
    assert versions(workdir) == []


def test_an_unreachable_store_exits_1_and_registers_nothing(workdir, store_repo, prefect_server):
    # The registry's directory is a regular file: Feast can neither read nor create it.
    blocker = workdir / "blocker"
    blocker.write_text("not a directory")
    rows, _, _ = labelled_balances(5)
    unreachable = make_repo(workdir / "down", rows, STORE_YAML.replace("${MLOPS_HOME}/feast/registry.db",
                                                                        f"{blocker}/registry.db"))
    cfg = write_config(workdir, store_config(unreachable))
    proc = run_cli(["train", "--config", cfg], workdir, prefect_server)
    assert proc.returncode == 1, proc.stderr
    line = first_error_line(proc.stderr)
    assert line.startswith("error: feature service: feature store unreachable: ") and str(blocker) in line, line
    assert versions(workdir) == []
