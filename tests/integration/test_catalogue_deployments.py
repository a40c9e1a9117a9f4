"""`make up` on a real Prefect server: the catalogue decides the model choices, the per-model drift
schedules and which models' events start a retrain; adding or removing a file is all it takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from mlops import events
from mlops.config import Settings
from mlops.local import stack
from mlops.local.prefect_rest import PrefectRest, wait_for

REPO = Path(__file__).resolve().parents[2]
CHURN = yaml.safe_load((REPO / "configs" / "churn.yaml").read_text())


def _model(directory: Path, file: str, name: str, schedule: dict) -> None:
    raw = {**CHURN, "model": {**CHURN["model"], "name": name}, "monitoring": {"schedule": schedule}}
    (directory / file).write_text(yaml.safe_dump(raw))


def _automation_outcomes(rest: PrefectRest, started: datetime, event_id: str) -> list[dict]:
    """The retrain automation's action events (executed or failed) for one triggering event."""
    found = [*rest.events("prefect.automation.action.executed", started),
             *rest.events("prefect.automation.action.failed", started)]
    return [e for e in found
            if any(r.get("prefect.resource.id") == f"prefect.event.{event_id}" for r in e.get("related", []))]


@pytest.fixture
def deployed(prefect_server, tmp_path):
    port = prefect_server.rsplit(":", 1)[1].split("/")[0]
    catalogue = tmp_path / "configs"
    catalogue.mkdir()
    settings = Settings(MLOPS_HOME=str(tmp_path / "home"), MLOPS_PREFECT_PORT=port, MLOPS_CATALOGUE=str(catalogue))
    rest = PrefectRest(prefect_server)
    yield settings, catalogue, rest
    # The session's server is shared: take the deployments (and their trigger automations) away.
    for deployment in rest.deployments(tags=["mlops"]):
        rest._request("DELETE", f"/deployments/{deployment['id']}")
    rest.close()


def test_the_catalogue_sets_choices_schedules_and_triggers_and_follows_its_files(deployed):
    settings, catalogue, rest = deployed
    _model(catalogue, "a.yaml", "model-a", {"interval_minutes": 15})
    _model(catalogue, "b.yaml", "model-b", {"cron": "0 3 * * *"})
    _model(catalogue, "copy.yaml", "model-a", {"interval_minutes": 5})  # forgot to rename
    (catalogue / "broken.yaml").write_text("model: [")

    notes = stack.deploy_flows(settings, REPO)
    refused = [line for line in notes if "refused" in line]
    assert len(refused) == 2 and any("copy.yaml" in line and "model-a" in line for line in refused)
    assert any("broken.yaml" in line and "not valid YAML" in line for line in refused)

    for flow in ("train", "deploy", "rollback", "monitor", "retrain"):
        (deployment,) = [d for d in rest.deployments(tags=["mlops", flow])]
        model = deployment["parameter_openapi_schema"]["properties"]["model"]
        assert model["enum"] == ["model-a", "model-b"], flow
    # The feature store's deployment is not per model: the sync leaves its form and schedule alone.
    materialize = rest.deployment("materialize", "hourly")
    assert set(materialize["parameter_openapi_schema"]["properties"]) == {"repo", "views"}
    assert materialize["parameters"] == {"repo": "features"}
    assert [s["schedule"]["cron"] for s in materialize["schedules"]] == ["0 * * * *"]
    assert materialize["global_concurrency_limit"]["limit"] == 1
    assert materialize["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert not any("materialize" in line for line in notes)
    monitor = rest.deployment("monitor", "scheduled")
    schedules = {s["parameters"]["model"]: s for s in monitor["schedules"]}
    assert set(schedules) == {"model-a", "model-b"}
    assert schedules["model-a"]["schedule"]["interval"] == 900 and schedules["model-a"]["slug"] == "model-model-a"
    assert schedules["model-b"]["schedule"]["cron"] == "0 3 * * *"
    # The scheduler creates runs from the schedules, each with its model as the parameter.
    wait_for("scheduled monitor runs of both models", lambda: {
        r["parameters"].get("model") for r in rest.runs_of("monitor", "scheduled")} >= {"model-a", "model-b"}, 60)

    # The Automations page names the retrain trigger and says what it does (not "A custom trigger").
    (automation,) = [a for a in rest.automations() if a["name"] == "retrain-on-drift-or-degradation"]
    assert "mlops.drift.detected" in automation["description"]

    # A drift event of a catalogue model starts its retrain with the model taken from the event;
    # an event of a model the catalogue does not have starts nothing (the schema refuses it).
    started = datetime.now(UTC)
    known = rest.emit(events.DRIFT_DETECTED, events.model_resource("model-b"), {"drift_share": 0.9})
    unknown = rest.emit(events.DRIFT_DETECTED, events.model_resource("not-in-catalogue"), {"drift_share": 0.9})
    (executed,) = wait_for("the automation to act on model-b's event",
                           lambda: _automation_outcomes(rest, started, known), 60)
    assert executed["event"] == "prefect.automation.action.executed"
    runs = wait_for("model-b's retrain run", lambda: [
        r for r in rest.runs_of("retrain", "on-drift") if (r["parameters"].get("trigger") or {}).get("event_id") == known], 30)
    assert [r["parameters"]["model"] for r in runs] == ["model-b"]
    (failed,) = wait_for("the automation to refuse the unknown model's event",
                         lambda: _automation_outcomes(rest, started, unknown), 60)
    assert failed["event"] == "prefect.automation.action.failed"
    assert "not-in-catalogue" in failed["payload"]["reason"]
    assert not [r for r in rest.runs_of("retrain", "on-drift") if r["parameters"].get("model") == "not-in-catalogue"]

    # Remove a model and add one; `make up` again, prefect.yaml untouched.
    (catalogue / "b.yaml").unlink()
    _model(catalogue, "c.yaml", "model-c", {"cron": "*/30 * * * *", "active": False})
    stack.deploy_flows(settings, REPO)
    monitor = rest.deployment("monitor", "scheduled")
    assert {s["parameters"]["model"]: s["active"] for s in monitor["schedules"]} == {"model-a": True, "model-c": False}
    assert rest.deployment("train", "manual")["parameter_openapi_schema"]["properties"]["model"]["enum"] == [
        "model-a", "model-c"]
    started = datetime.now(UTC)
    gone = rest.emit(events.DRIFT_DETECTED, events.model_resource("model-b"), {"drift_share": 0.9, "n": str(uuid.uuid4())})
    (failed,) = wait_for("the automation to refuse the removed model's event",
                         lambda: _automation_outcomes(rest, started, gone), 60)
    assert failed["event"] == "prefect.automation.action.failed"


def test_a_run_for_a_model_outside_the_catalogue_is_refused_by_the_server(deployed):
    settings, catalogue, rest = deployed
    _model(catalogue, "a.yaml", "model-a", {"interval_minutes": 60})
    stack.deploy_flows(settings, REPO)
    deployment_id = rest.deployment_id("train", "manual")
    response = rest.http.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": {"model": "model-z"}})
    assert response.status_code == 409 and "model-z" in response.text
    with pytest.raises(httpx.HTTPStatusError):
        rest.start_run("train", "manual", {"model": "model-a", "overrides": {"split": {"test_size": "half"}}})
