"""The GitHub workflows pass actionlint, and actionlint does fail a broken one (so the check can fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
# The dev group installs it into the environment's bin, beside the interpreter.
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or "actionlint"


def _actionlint(*paths: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([ACTIONLINT, "-no-color", *map(str, paths)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"test.yml", "model-ci.yml"}
    done = _actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_fails_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    # An unknown event and an expression on a context that does not exist.
    broken.write_text("on: pushh\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope.x }}\n")
    done = _actionlint(broken, cwd=tmp_path)
    assert done.returncode == 1
    assert "pushh" in done.stdout and "nope" in done.stdout


def test_model_ci_runs_on_config_and_feature_changes_against_the_base_branch():
    workflow = yaml.safe_load((WORKFLOWS / "model-ci.yml").read_text())
    trigger = workflow[True]["pull_request"]  # YAML 1.1 reads the key `on` as True
    assert set(trigger["paths"]) == {"configs/**", "features/**"}
    steps = workflow["jobs"]["model-ci"]["steps"]
    run = next(s["run"] for s in steps if "mlops ci" in s.get("run", ""))
    assert '--changed-since "origin/$BASE_REF"' in run
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") for s in steps)
    assert "make test" in yaml.safe_load((WORKFLOWS / "test.yml").read_text())["jobs"]["test"]["steps"][-1]["run"]
