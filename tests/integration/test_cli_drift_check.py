"""`mlops drift-check` as users run it: a real subprocess, its JSON, its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.data import write_frame
from mlops.drift import profile_frame
from mlops.local.simulate import simulate_churn

MLOPS = str(Path(sys.executable).parent / "mlops")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOPS, "drift-check", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("drift-check")
    write_frame(simulate_churn(3000, seed=1), str(folder / "ref.parquet"))
    write_frame(simulate_churn(2000, seed=2), str(folder / "same.csv"))
    write_frame(simulate_churn(2000, "strong", seed=3), str(folder / "shifted.parquet"))
    return folder


def test_json_lists_every_column_and_the_verdict(files):
    done = run("--reference", str(files / "ref.parquet"), "--current", str(files / "shifted.parquet"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "drift" and out["dataset_drift"] is True
    by_name = {c["column"]: c for c in out["columns"]}
    assert {"age", "monthly_charges", "contract", "plan"} <= set(by_name)
    assert "event_time" not in by_name  # timestamps are not drift-checked
    assert by_name["monthly_charges"]["method"] == "wasserstein" and by_name["monthly_charges"]["drifted"]
    assert by_name["contract"]["method"] == "jensenshannon" and by_name["contract"]["threshold"] == 0.1
    assert set(out["drifted_columns"]) == {c for c, v in by_name.items() if v["drifted"]}
    assert (out["rows_reference"], out["rows_current"]) == (3000, 2000)


def test_stored_profile_and_config_file_are_used(files):
    frame = simulate_churn(3000, seed=1)
    profile = files / "ref.npz"
    profile.write_bytes(profile_frame(frame, ["age", "monthly_charges"], ["plan"]).to_bytes())
    config = files / "drift.yaml"
    config.write_text("monitoring:\n  num_method: ks\n  threshold: 0.01\n  drift_share: 0.9\n")
    done = run("--reference", str(profile), "--current", str(files / "same.csv"), "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [c["column"] for c in out["columns"]] == ["age", "monthly_charges", "plan"]
    assert [c["method"] for c in out["columns"]] == ["ks", "ks", "jensenshannon"]
    assert {c["threshold"] for c in out["columns"]} == {0.01}
    assert out["status"] == "no-drift"


@pytest.mark.parametrize(
    ("current", "config", "message"),
    [
        ("missing.parquet", None, "missing.parquet: file not found"),
        ("no_age.parquet", None, "current data lacks monitored columns: age"),
        ("same.csv", "bad.yaml", "threshold"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(files, current, config, message):
    write_frame(simulate_churn(500, seed=4).drop(columns=["age"]), str(files / "no_age.parquet"))
    (files / "bad.yaml").write_text("threshold: -1\n")
    args = ["--reference", str(files / "ref.parquet"), "--current", str(files / current)]
    done = run(*args, *(["--config", str(files / config)] if config else []))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_a_truncated_profile_is_one_line_and_exit_code_2(files):
    full = profile_frame(simulate_churn(3000, seed=1), ["age"], ["plan"]).to_bytes()
    profile = files / "truncated.npz"
    profile.write_bytes(full[: len(full) // 2])
    done = run("--reference", str(profile), "--current", str(files / "same.csv"), "--json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {profile}: not a drift reference profile")
    assert json.loads(done.stdout)["exit_code"] == 2


def test_a_one_row_window_gives_no_verdict(files):
    write_frame(simulate_churn(1, "strong", seed=5), str(files / "one.parquet"))
    done = run("--reference", str(files / "ref.parquet"), "--current", str(files / "one.parquet"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "insufficient-data" and out["dataset_drift"] is False and out["rows_current"] == 1
    text = run("--reference", str(files / "ref.parquet"), "--current", str(files / "one.parquet"))
    assert text.returncode == 0 and text.stdout.startswith("insufficient-data: 1 row in the current window")
