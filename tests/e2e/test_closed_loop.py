"""The whole loop with nobody in it: monitor -> event -> automation -> retrain -> deploy.

Real processes only, started the way users start them (`mlops stack up`): a Prefect server with
its event and automation services, an MLflow server, a process worker and the serving app, with
the project's own prefect.yaml deployed, unchanged. Only the catalogue is the test's
(MLOPS_CATALOGUE: a small dataset in a temporary folder, no cooldown, no post-deployment watch),
so triggers, schedules and per-model slots are exactly the ones users get. The test talks to Prefect over
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
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.local.traffic import _records, send_labels, send_predictions, simulate_traffic
from mlops.registry import Registry
from mlops.results import STATUS_SKIPPED, artifact_key
from tests.timing import LENIENT_PROMOTION

REPO = Path(__file__).resolve().parents[2]
MLOPS = str(Path(sys.executable).parent / "mlops")
MODEL = "churn-classifier"  # model A: a classifier, the default model of /predict (its serving.default)
RESOURCE = f"mlops.model.{MODEL}"
SPEND = "spend-regressor"  # model B: a regressor on the same stack, with its own loop
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
        "serving": {"prediction_log_uri": str(tmp / "predictions"), "refresh_seconds": 1, "default": True},
        "rollback": {"enabled": False},
        "promotion": LENIENT_PROMOTION,
        "retrain": {"cooldown_minutes": 0},
    }
    catalogue = tmp / "configs"
    catalogue.mkdir()
    (catalogue / "churn.yaml").write_text(yaml.safe_dump(config))
    spend = yaml.safe_load((REPO / "configs" / "spend.yaml").read_text())
    spend.update(
        dataset={**spend["dataset"], "uri": write_frame(simulate_spend(3000, seed=81), str(tmp / "spend.parquet"))},
        model={**spend["model"], "params": {"max_iter": 40}},
        validation={**spend["validation"], "min_rows": 100},
        gates={"min_metrics": {"r2": 0.5}},
        serving={**config["serving"], "default": False}, rollback=config["rollback"], promotion={**spend["promotion"], **LENIENT_PROMOTION},
        retrain=config["retrain"],
    )
    (catalogue / "spend.yaml").write_text(yaml.safe_dump(spend))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "MLOPS_"))}
    env.update(
        MLOPS_HOME=str(tmp / "home"),
        MLOPS_PREFECT_PORT=str(stack.free_port()),
        MLOPS_MLFLOW_PORT=str(stack.free_port()),
        MLOPS_SERVING_PORT=str(stack.free_port()),
        MLOPS_WORKER_PORT=str(stack.free_port()),
        MLOPS_WORKER_POLL_SECONDS="1",
        MLOPS_CATALOGUE=str(catalogue),
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
        assert "catalogue: 2 models: churn-classifier, spend-regressor" in up.stdout, up.stdout
        for model in (MODEL, SPEND):
            assert prefect.run("train", "manual", {"model": model})["state_type"] == "COMPLETED"
            assert prefect.run("deploy", "manual", {"model": model})["state_type"] == "COMPLETED"
        with httpx.Client(base_url=serving_url, timeout=30) as client:
            # The default model loads at start; the other on its first request.
            wait_for("the serving app to load the default model's champion",
                     lambda: client.get("/ready").status_code == 200, 120)
        yield {
            "prefect": prefect, "registry": Registry(settings.local_mlflow_url), "serving": serving_url,
            "tmp": tmp, "settings": settings, "mlops": mlops,
        }
    finally:
        down = mlops("stack", "down")
        assert down.returncode == 0, down.stderr


def _versions(loop: dict[str, Any], model: str = MODEL) -> list[str]:
    return [str(v.version) for v in loop["registry"].list_versions(model)]


def _champion(loop: dict[str, Any], model: str) -> str:
    return loop["registry"].version_by_alias(model, "champion").version


def test_each_model_is_answered_by_its_own_champion(loop):
    churn = simulate_traffic(MODEL, 40, seed=75, catalogue=loop["tmp"] / "configs")
    spend = simulate_traffic(SPEND, 40, seed=76, catalogue=loop["tmp"] / "configs")
    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        b = client.post(f"/models/{SPEND}/predict", json={"records": _records(spend.features)}).json()
        a = client.post(f"/models/{MODEL}/predict", json={"records": _records(churn.features)}).json()
        default = client.post("/predict", json={"records": _records(churn.features)}).json()
        # The same customers' rows sent to B: B's model answers them (amounts), not A's (classes).
        same = client.post(f"/models/{SPEND}/predict", json={"records": _records(churn.features)}).json()
        unknown = client.post("/models/nope/predict", json={"records": _records(churn.features)})
    assert b["model_version"] == _champion(loop, SPEND) and "probabilities" not in b
    assert len({round(v, 6) for v in b["predictions"]}) > 10  # amounts, not two classes
    assert a["model_version"] == _champion(loop, MODEL) and set(a["predictions"]) <= {0, 1} and a["probabilities"]
    assert default["predictions"] == a["predictions"]  # /predict is the default model, churn
    assert same["model_version"] == b["model_version"] and "probabilities" not in same
    assert len({round(v, 6) for v in same["predictions"]}) > 10
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]


def test_drifted_traffic_triggers_a_retrain_that_goes_through_deploy(loop):
    prefect: PrefectRest = loop["prefect"]
    before = _versions(loop)
    spend_before, spend_champion = _versions(loop, SPEND), _champion(loop, SPEND)
    started = datetime.now(UTC)
    drifted = simulate_churn(800, "strong", seed=72, start="2026-01-01")
    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        sent = send_predictions(client, drifted.drop(columns=FEATURES_DROP))
        assert sent.failed == 0 and sent.rows == 800
        send_labels(client, sent, drifted["churned"])
        wait_for("the prediction log to be written",
              lambda: client.get("/ready").json()["prediction_log"]["written_rows"] >= 800, 60)

    # The scheduled check, started now instead of at the top of the hour, on the served traffic.
    monitor = prefect.run("monitor", "scheduled", {"model": MODEL, "window_hours": 1})
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
    # Model B was not touched: no retrain run for it, no new version, the same champion.
    assert not [r for r in prefect.runs_of("retrain", "on-drift") if r["parameters"].get("model") == SPEND]
    assert _versions(loop, SPEND) == spend_before and _champion(loop, SPEND) == spend_champion


def test_undrifted_data_starts_no_retrain(loop):
    prefect: PrefectRest = loop["prefect"]
    started = datetime.now(UTC)
    retrains_before = len(prefect.runs_of("retrain", "on-drift"))
    calm = write_frame(simulate_churn(1500, seed=73, start="2026-02-01"), str(loop["tmp"] / "calm.parquet"))
    monitor = prefect.run("monitor", "scheduled", {"model": MODEL, "current_uri": calm})
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


def test_a_burst_of_events_on_two_models_starts_exactly_one_retrain_of_each(loop):
    prefect: PrefectRest = loop["prefect"]
    before = {model: _versions(loop, model) for model in (MODEL, SPEND)}
    ids = {model: set() for model in before}
    for i in range(5):  # interleaved, as a storm on both would arrive
        for model in before:
            payload = {"drift_share": 0.8, "champion_version": before[model][-1], "burst": i}
            ids[model].add(prefect.emit("mlops.drift.detected", {"prefect.resource.id": f"mlops.model.{model}"}, payload))
    every = ids[MODEL] | ids[SPEND]
    runs = wait_for("a run for each of the ten events",
                    lambda: (r := _retrains_for(prefect, every)) and len(r) == 10 and r, 120)
    ended = [prefect.wait_run(r["id"], 600) for r in runs]
    seen = [(r["parameters"]["model"], r["state_type"], r["state"]["message"]) for r in ended]
    assert all(r["state_type"] == "COMPLETED" for r in ended), seen
    for model in before:
        mine = [r for r in ended if r["parameters"]["trigger"]["event_id"] in ids[model]]
        assert {r["parameters"]["model"] for r in mine} == {model}, seen
        # While one retrain of the model holds its slot (mlops-retrain-<model>), the model's other
        # runs are skipped at once, each saying why; the other model's slot is its own, so its
        # retrain is neither skipped nor cancelled by this one's.
        outcomes = [_retrain_outcome(prefect, r["id"], model) for r in mine]
        assert sum(outcome != STATUS_SKIPPED for outcome in outcomes) == 1, (model, outcomes)
        assert len(_versions(loop, model)) == len(before[model]) + 1, model


def _retrain_outcome(prefect: PrefectRest, run_id: str, model: str = MODEL) -> str:
    """The status a retrain run's summary artifact gives (its description is `<status>: <reason>`)."""
    summaries = [a for a in prefect.artifacts_of(run_id) if a["key"] == artifact_key("retrain", model)]
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
    # The run's own overrides: the catalogue's file is not touched.
    slow = {"model": {"params": {"max_iter": 3000, "early_stopping": False, "max_leaf_nodes": 63}}}
    killed = prefect.start_run("retrain", "on-drift", {"model": MODEL, "overrides": slow, "cooldown_minutes": 0})
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
    rerun = prefect.run("retrain", "on-drift", {"model": MODEL, "cooldown_minutes": 0}, timeout=400)
    assert rerun["state_type"] == "COMPLETED", rerun["state"]["message"]
    after = _versions(loop)
    assert len(after) == len(before) + 1
    assert registry.read_audit(MODEL)[-1].to_version == after[-1]
    with httpx.Client(base_url=loop["serving"], timeout=30) as client:
        assert send_predictions(client, traffic).failed == 0
