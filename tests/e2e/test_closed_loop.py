"""The whole loop with nobody in it: monitor -> event -> automation -> retrain -> deploy.

Real processes only, started the way users start them (`mlops stack up`): a Prefect server with
its event and automation services, an MLflow server, a process worker and the serving app, with
the project's prefect.yaml deployed. The only change to prefect.yaml is the pipeline config
(a small dataset in a temporary folder, no cooldown, no post-deployment watch), so triggers,
schedules and concurrency limits are exactly the ones users get. The test talks to Prefect over
its REST API and to the serving app over HTTP, as a user's tooling would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlops.config import Settings
from mlops.data import write_frame
from mlops.local import stack
from mlops.local.prefect_rest import PrefectRest, wait_for
from mlops.local.simulate import simulate_churn
from mlops.local.traffic import send_labels, send_predictions
from mlops.registry import Registry
from mlops.results import STATUS_SKIPPED, artifact_key
from tests.timing import LENIENT_PROMOTION

REPO = Path(__file__).resolve().parents[2]
MLOPS = str(Path(sys.executable).parent / "mlops")
MODEL = "churn-classifier"  # prefect.yaml's trigger matches this model's resource id
RESOURCE = f"mlops.model.{MODEL}"
FEATURES_DROP = ["churned", "event_time"]


def _retrains_for(prefect: PrefectRest, event_ids: set[str]) -> list[dict]:
    return [r for r in prefect.runs_of("retrain", "on-drift")
            if (r["parameters"].get("trigger") or {}).get("event_id") in event_ids]


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("loop")
    train_uri = write_frame(simulate_churn(3000, seed=71), str(tmp / "churn.parquet"))
    config = {
        "dataset": {"uri": train_uri, "target": "churned", "timestamp": "event_time"},
        "model": {"name": MODEL, "params": {"max_iter": 40}},
        "validation": {"min_rows": 100},
        "serving": {"prediction_log_uri": str(tmp / "predictions"), "refresh_seconds": 1},
        "rollback": {"enabled": False},
        "promotion": LENIENT_PROMOTION,
        "retrain": {"cooldown_minutes": 0},
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    # The stack's serving app serves the catalogue directory: this one model.
    (tmp / "catalogue").mkdir()
    (tmp / "catalogue" / "config.yaml").write_text(yaml.safe_dump(config))
    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in project["deployments"]:
        deployment["parameters"]["config"] = config
    (tmp / "prefect.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env.update(
        MLOPS_HOME=str(tmp / "home"),
        MLOPS_PREFECT_PORT=str(stack.free_port()),
        MLOPS_MLFLOW_PORT=str(stack.free_port()),
        MLOPS_SERVING_PORT=str(stack.free_port()),
        MLOPS_WORKER_PORT=str(stack.free_port()),
        MLOPS_WORKER_POLL_SECONDS="1",
        MLOPS_PREFECT_FILE=str(tmp / "prefect.yaml"),
        MLOPS_STACK_CONFIG=str(tmp / "config.yaml"),
        MLOPS_CATALOGUE=str(tmp / "catalogue"),
    )
    settings = Settings(**{k: v for k, v in env.items() if k.startswith("MLOPS_")})

    def mlops(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([MLOPS, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    try:
        up = mlops("stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "skipped" not in up.stdout
        prefect = PrefectRest(settings.local_prefect_url)
        serving_url = f"http://{settings.stack_host}:{settings.serving_port}"
        # A champion to watch: the manual deployments, run through the worker.
        assert prefect.run("train", "manual")["state_type"] == "COMPLETED"
        assert prefect.run("deploy", "manual")["state_type"] == "COMPLETED"
        with httpx.Client(base_url=serving_url, timeout=30) as client:
            wait_for("the serving app to load the champion", lambda: client.get("/ready").status_code == 200, 120)
        yield {
            "prefect": prefect, "registry": Registry(settings.local_mlflow_url), "serving": serving_url,
            "tmp": tmp, "settings": settings, "mlops": mlops,
        }
    finally:
        down = mlops("stack", "down")
        assert down.returncode == 0, down.stderr


def _versions(loop: dict[str, Any]) -> list[str]:
    return [str(v.version) for v in loop["registry"].list_versions(MODEL)]


def test_drifted_traffic_triggers_a_retrain_that_goes_through_deploy(loop):
    prefect: PrefectRest = loop["prefect"]
    before = _versions(loop)
    started = datetime.now(UTC)
    drifted = simulate_churn(800, "strong", seed=72, start="2026-01-01")
    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        sent = send_predictions(client, drifted.drop(columns=FEATURES_DROP))
        assert sent.failed == 0 and sent.rows == 800
        send_labels(client, sent, drifted["churned"])
        wait_for("the prediction log to be written",
              lambda: client.get("/ready").json()["prediction_log"]["written_rows"] >= 800, 60)

    # The scheduled check, started now instead of at the top of the hour, on the served traffic.
    monitor = prefect.run("monitor", "hourly", {"window_hours": 1})
    assert monitor["state_type"] == "COMPLETED", monitor["state"]["message"]

    (event,) = wait_for("the drift event", lambda: prefect.events("mlops.drift.detected", started), 60)
    assert event["resource"]["prefect.resource.id"] == RESOURCE
    assert event["payload"]["champion_version"] == before[-1]
    assert event["payload"]["drifted_columns"] and event["payload"]["drift_share"] >= 0.5
    assert event["payload"]["report_location"]

    (retrain,) = wait_for("the automation's retrain run", lambda: _retrains_for(prefect, {event["id"]}), 90)
    assert retrain["created_by"]["type"] == "AUTOMATION"
    assert retrain["parameters"]["trigger"]["payload"]["drifted_columns"] == event["payload"]["drifted_columns"]
    finished = prefect.wait_run(retrain["id"], 400)
    assert finished["state_type"] == "COMPLETED", finished["state"]["message"]

    # A new version was registered and went through deploy: its decision is in the audit trail.
    after = _versions(loop)
    assert len(after) == len(before) + 1
    record = loop["registry"].read_audit(MODEL)[-1]
    assert record.to_version == after[-1] and record.action in ("promoted", "refused")
    assert record.evidence["trigger"]["event_id"] == event["id"]
    assert record.evidence["trigger"]["source"] == "retrain"
    # It learned from the served traffic too: the labelled rows were added to the training data.
    assert "retrain" in loop["registry"].get_version(MODEL, after[-1]).tags.get("data_uri", "")


def test_undrifted_data_starts_no_retrain(loop):
    prefect: PrefectRest = loop["prefect"]
    started = datetime.now(UTC)
    retrains_before = len(prefect.runs_of("retrain", "on-drift"))
    calm = write_frame(simulate_churn(1500, seed=73, start="2026-02-01"), str(loop["tmp"] / "calm.parquet"))
    monitor = prefect.run("monitor", "hourly", {"current_uri": calm})
    assert monitor["state_type"] == "COMPLETED", monitor["state"]["message"]
    # Sentinels instead of a sleep. The run's client sends a task's state events after whatever
    # the task emitted, so once emit-breach-event is recorded as completed, a breach event from it
    # has reached the server; a sentinel sent after that is stored after it, so once the sentinel
    # is readable, a wrongly emitted drift event would be readable too.
    wait_for("the monitor run's emit-breach-event task to be recorded",
             lambda: [t for t in prefect.task_runs([monitor["id"]], "emit-breach-event") if t["state_type"] == "COMPLETED"], 60)
    sentinel = {"prefect.resource.id": f"mlops.test.sentinel.{uuid.uuid4()}"}
    sentinel_id = prefect.emit("mlops.test.sentinel", sentinel, {})
    wait_for("the sentinel event",
             lambda: [e for e in prefect.events("mlops.test.sentinel", started) if e["id"] == sentinel_id], 60)
    assert prefect.events("mlops.drift.detected", started) == []
    assert prefect.events("mlops.performance.degraded", started) == []
    assert len(prefect.runs_of("retrain", "on-drift")) == retrains_before


def test_a_burst_of_events_starts_exactly_one_retrain(loop):
    prefect: PrefectRest = loop["prefect"]
    before = _versions(loop)
    resource = {"prefect.resource.id": RESOURCE}
    payload = {"drift_share": 0.8, "champion_version": before[-1]}
    ids = {prefect.emit("mlops.drift.detected", resource, {**payload, "burst": i}) for i in range(5)}
    runs = wait_for("a run for each of the five events", lambda: (r := _retrains_for(prefect, ids)) and len(r) == 5 and r, 90)
    ended = [prefect.wait_run(r["id"], 400) for r in runs]
    seen = [(r["state_type"], r["state"]["message"]) for r in ended]
    cancelled = [r for r in ended if r["state_type"] == "CANCELLED"]
    completed = [r for r in ended if r["state_type"] == "COMPLETED"]
    assert len(cancelled) + len(completed) == 5 and len(cancelled) >= 1 and completed, seen
    assert all("concurrency" in (r["state"]["message"] or "").lower() for r in cancelled), seen
    # While one retrain holds the slot, the others are cancelled; a run the worker reaches only
    # after it ended gets the slot, and the cooldown then skips it: one retrain either way.
    outcomes = [_retrain_outcome(prefect, r["id"]) for r in completed]
    assert sum(outcome != STATUS_SKIPPED for outcome in outcomes) == 1, outcomes
    assert len(_versions(loop)) == len(before) + 1


def _retrain_outcome(prefect: PrefectRest, run_id: str) -> str:
    """The status a retrain run's summary artifact gives (its description is `<status>: <reason>`)."""
    summaries = [a for a in prefect.artifacts_of(run_id) if a["key"] == artifact_key("retrain", MODEL)]
    assert summaries, f"retrain run {run_id} published no summary"
    return summaries[0]["description"].split(":", 1)[0]


def _process_tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc: what a lost node takes down with the worker."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # Field 4 of /proc/<pid>/stat is the parent; the name (field 2) may hold spaces.
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _running_task(prefect: PrefectRest, flow_run_id: str, task_name: str) -> bool:
    """Is `task_name` running in the flow run or one of its subflows?"""
    run_ids = [flow_run_id, *(r["id"] for r in prefect.child_runs(flow_run_id))]
    return any(t["state_type"] == "RUNNING" for t in prefect.task_runs(run_ids, task_name))


def test_a_worker_killed_mid_retrain_keeps_the_champion_serving_and_the_next_retrain_completes(loop):
    # Last in this module: it kills the stack's worker (and starts a new one).
    prefect: PrefectRest = loop["prefect"]
    registry: Registry = loop["registry"]
    settings: Settings = loop["settings"]
    before = _versions(loop)
    champion = registry.version_by_alias(MODEL, "champion").version
    traffic = simulate_churn(200, seed=74).drop(columns=FEATURES_DROP)

    # A retrain whose training takes long enough to be caught in the middle of fitting.
    config = yaml.safe_load((loop["tmp"] / "config.yaml").read_text())
    config["model"]["params"] = {"max_iter": 3000, "early_stopping": False, "max_leaf_nodes": 63}
    killed = prefect.start_run("retrain", "on-drift", {"config": config, "cooldown_minutes": 0})
    wait_for("the retrain to be fitting", lambda: _running_task(prefect, killed["id"], "fit-model"), 180, every=0.5)
    worker = stack.running_pid(settings.home, "worker")
    assert worker is not None
    tree = _process_tree(worker)
    assert len(tree) > 1, "the flow run's process should be a child of the worker"
    for pid in tree:
        os.kill(pid, 9)

    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        sent = send_predictions(client, traffic)
    assert sent.failed == 0 and sent.versions == {champion}

    # Its heartbeats stop; deployments/automations.yaml marks it Crashed, which frees retrain's slot.
    crashed = prefect.wait_run(killed["id"], 240)
    assert crashed["state_type"] == "CRASHED", crashed["state"]
    assert "heartbeat" in crashed["state"]["message"]
    assert _versions(loop) == before
    assert registry.version_by_alias(MODEL, "champion").version == champion

    # A new worker (what a restarted pod or `mlops stack up` gives), and the next retrain runs from
    # scratch: not cancelled by a slot the dead run still holds, one new version, through deploy.
    up = loop["mlops"]("stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    rerun = prefect.run("retrain", "on-drift", {"cooldown_minutes": 0}, timeout=400)
    assert rerun["state_type"] == "COMPLETED", rerun["state"]["message"]
    after = _versions(loop)
    assert len(after) == len(before) + 1
    assert registry.read_audit(MODEL)[-1].to_version == after[-1]
    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        assert send_predictions(client, traffic).failed == 0
