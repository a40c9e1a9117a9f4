"""`mlops stack up/down` (what `make up` / `make down` run) with real servers, end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from mlops.config import Settings
from mlops.data import write_frame
from mlops.local import stack
from mlops.local.simulate import simulate_churn

MLOPS = str(Path(sys.executable).parent / "mlops")


def test_stack_serves_train_runs_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env.update(
        # Not ./.mlops: a default that resolved against the working directory would land there.
        MLOPS_HOME=str(tmp_path / "home"),
        MLOPS_PREFECT_PORT=str(stack.free_port()),
        MLOPS_MLFLOW_PORT=str(stack.free_port()),
    )
    settings = Settings(**{k: env[k] for k in ("MLOPS_HOME", "MLOPS_PREFECT_PORT", "MLOPS_MLFLOW_PORT")})

    def mlops(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([MLOPS, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    # The project's feature repository, as `make up` finds it in a checkout: applied before anything deploys.
    shutil.copytree(Path(__file__).resolve().parents[2] / "features", tmp_path / "features",
                    ignore=shutil.ignore_patterns("__pycache__"))

    pids: list[int | None] = []
    try:
        up = mlops("stack", "up")
        assert up.returncode == 0, up.stderr + up.stdout
        assert f"features: applied {tmp_path / 'features'}: 2 feature views" in up.stdout
        assert (tmp_path / "home" / "feast" / "registry.db").is_file()
        assert mlops("stack", "status").returncode == 0
        again = mlops("stack", "up")
        assert again.stdout.count("already running") == 2
        # A second stack (another home) on the same ports adopts nothing and reports nothing as its own.
        second = {**env, "MLOPS_HOME": str(tmp_path / "second")}
        taken = subprocess.run([MLOPS, "stack", "status"], cwd=tmp_path, env=second, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 3 and taken.stdout.count("taken") == 2 and " up " not in taken.stdout, taken.stdout
        refused = subprocess.run([MLOPS, "stack", "up"], cwd=tmp_path, env=second, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "already running" not in refused.stdout, refused.stdout
        assert refused.stderr.startswith(f"error: prefect: port {settings.prefect_port} on 127.0.0.1 is in use by a "
                                         "process that is not this stack's") and len(refused.stderr.splitlines()) == 1

        write_frame(simulate_churn(2000, seed=31), str(tmp_path / "churn.parquet"))
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({
            "dataset": {"uri": "churn.parquet", "target": "churned", "timestamp": "event_time"},
            "model": {"name": "stack-churn", "params": {"max_iter": 30}},
            "validation": {"min_rows": 100},
        }))
        # No MLFLOW_TRACKING_URI / PREFECT_API_URL: the CLI must find the running stack itself.
        proc = mlops("train", "--config", "c.yaml", "--json")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["run_url"].startswith(settings.local_mlflow_url)
        assert result["model_url"].endswith("/#/models/stack-churn/versions/1")

        # The MLflow server holds the registered version ...
        versions = httpx.get(
            f"{settings.local_mlflow_url}/api/2.0/mlflow/model-versions/search",
            params={"filter": "name='stack-churn'"}, timeout=10,
        ).json()["model_versions"]
        assert [v["version"] for v in versions] == ["1"]
        # ... and the Prefect server the completed flow run.
        run = httpx.get(f"{settings.local_prefect_url}/flow_runs/{result['flow_run_id']}", timeout=10).json()
        assert run["state"]["type"] == "COMPLETED"
        pids = [stack.running_pid(settings.home, s.name) for s in stack.local_services(settings)]
        assert all(pids)
    finally:
        down = mlops("stack", "down")
    assert down.returncode == 0
    assert down.stdout.count("stopped") == 2
    for pid in pids:
        try:
            os.killpg(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"process group {pid} survived `stack down`"
    assert mlops("stack", "status").returncode == 3
    # The stack, the CLI and the flow run wrote nothing into the working directory but the home (the
    # refused second stack wrote nothing at all):
    # what is there is what the test put there (Python's bytecode cache of the feature repository aside).
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if "__pycache__" not in p.parts}
    assert written == {"home", "features", "churn.parquet", "c.yaml"}, written
