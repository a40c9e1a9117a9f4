"""prefect.yaml: what it declares must agree with the flows, the events and configs/churn.yaml."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from mlops import events
from mlops.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {
    f"{d['entrypoint'].split(':')[1]}/{d['name']}": d for d in PREFECT_YAML["deployments"]
}


def test_the_loop_is_deployed():
    assert set(DEPLOYMENTS) == {"train/manual", "deploy/manual", "rollback/manual", "monitor/hourly", "retrain/on-drift"}


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_entrypoint_is_the_flow_of_that_name(key):
    module, function = DEPLOYMENTS[key]["entrypoint"].split(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), function)
    assert flow.name == key.split("/")[0]
    assert DEPLOYMENTS[key]["work_pool"]["name"] == "local-process"


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_config_parameter_is_configs_churn_yaml(key):
    # The UI form must start from the same config the CLI and `make demo` use.
    inline = parse_config(DEPLOYMENTS[key]["parameters"]["config"], source=f"prefect.yaml {key}")
    assert inline == load_config(ROOT / "configs" / "churn.yaml")


def test_monitor_runs_on_a_cron_schedule():
    from prefect.client.schemas.schedules import CronSchedule

    (schedule,) = DEPLOYMENTS["monitor/hourly"]["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron
    assert cron.cron == "0 * * * *" and schedule["active"] is True


def test_retrain_listens_to_the_monitor_events_of_its_model():
    deployment = DEPLOYMENTS["retrain/on-drift"]
    (trigger,) = deployment["triggers"]
    model = deployment["parameters"]["config"]["model"]["name"]
    assert set(trigger["expect"]) == {events.DRIFT_DETECTED, events.PERFORMANCE_DEGRADED}
    assert trigger["match"]["prefect.resource.id"] == events.model_resource(model)["prefect.resource.id"]
    assert trigger["posture"] == "Reactive" and trigger["threshold"] == 1
    assert trigger["parameters"]["trigger"]["payload"] == "{{ event.payload }}"


def test_retrain_storms_are_capped_by_a_concurrency_limit():
    assert DEPLOYMENTS["retrain/on-drift"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_every_parameter_has_a_type_and_a_description_for_the_ui_form(key):
    from prefect.utilities.callables import parameter_schema

    module, function = DEPLOYMENTS[key]["entrypoint"].split(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), function)
    schema = parameter_schema(flow).model_dump()
    assert schema["properties"]["config"]["$ref"] == "#/definitions/PipelineConfig"
    for name, prop in schema["properties"].items():
        assert "$ref" in prop or "type" in prop or "anyOf" in prop, f"{key}: parameter {name} has no type"
        assert prop.get("description"), f"{key}: parameter {name} has no description (flow docstring Args:)"


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_every_run_sends_heartbeats_often_enough_for_the_silent_run_automation(key):
    automations = yaml.safe_load((ROOT / "deployments" / "automations.yaml").read_text())["automations"]
    (silent,) = [a for a in automations if a["name"] == "mlops-crash-silent-flow-runs"]
    env = DEPLOYMENTS[key]["work_pool"]["job_variables"]["env"]
    # Two heartbeats may be late before a healthy run would be taken for a dead one.
    assert 3 * int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) <= silent["trigger"]["within"]
    assert silent["trigger"]["posture"] == "Proactive"
    assert silent["actions"] == [{"type": "change-flow-run-state", "state": "CRASHED", "message": silent["actions"][0]["message"]}]
