"""prefect.yaml: what it declares must agree with the flows, the events and the catalogue."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from mlops import events
from mlops.catalogue import load_catalogue

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {
    f"{d['entrypoint'].split(':')[1]}/{d['name']}": d for d in PREFECT_YAML["deployments"]
}
# The feature store's deployment is not per model: it takes the Feast repository, not `model`.
FEATURE_DEPLOYMENTS = {"materialize/hourly"}
MODEL_DEPLOYMENTS = sorted(set(DEPLOYMENTS) - FEATURE_DEPLOYMENTS)


def test_the_loop_and_the_feature_store_are_deployed():
    assert set(DEPLOYMENTS) == {
        "train_model/manual", "deploy_model/manual", "rollback_model/manual", "monitor_model/scheduled",
        "retrain_model/on-drift", "materialize/hourly",
    }


def _flow(key: str):
    module, function = DEPLOYMENTS[key]["entrypoint"].split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), function)


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_entrypoint_is_a_catalogue_flow_named_like_the_config_flow(key):
    # train_model is the run `train` is, with its config read from the catalogue: one flow name in
    # the UI, whichever way a run was started.
    flow = _flow(key)
    assert flow.name == key.split("/")[0].removesuffix("_model")
    # Every deployment carries the project tag: `make up`'s catalogue sync only looks at those.
    assert "mlops" in DEPLOYMENTS[key]["tags"]
    assert DEPLOYMENTS[key]["work_pool"]["name"] == "local-process"
    assert DEPLOYMENTS[key]["enforce_parameter_schema"] is True


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_no_deployment_names_a_model(key):
    # Models come from configs/: prefect.yaml must not pin one (README "Bring your own model").
    text = yaml.safe_dump(DEPLOYMENTS[key])
    for entry in load_catalogue(ROOT / "configs").entries.values():
        assert entry.name not in text and entry.path.name not in text


def test_the_monitor_deployment_takes_its_schedules_from_the_catalogue():
    assert "schedules" not in DEPLOYMENTS["monitor_model/scheduled"]


def test_retrain_listens_to_the_monitor_events_of_every_model_and_takes_the_model_from_the_event():
    deployment = DEPLOYMENTS["retrain_model/on-drift"]
    (trigger,) = deployment["triggers"]
    assert set(trigger["expect"]) == {events.DRIFT_DETECTED, events.PERFORMANCE_DEGRADED}
    assert trigger["match"]["prefect.resource.id"] == events.model_resource("*")["prefect.resource.id"]
    assert trigger["for_each"] == ["prefect.resource.id"]
    assert trigger["posture"] == "Reactive" and trigger["threshold"] == 1
    assert trigger["name"] == "retrain-on-drift-or-degradation" and trigger["description"]
    # The model is the matched resource id without its prefix (what Prefect's Jinja renders).
    import jinja2

    template = jinja2.Environment().from_string(trigger["parameters"]["model"])
    resource_id = events.model_resource("spend-regressor.v2")["prefect.resource.id"]
    assert template.render(event={"resource": {"id": resource_id}}) == "spend-regressor.v2"
    assert trigger["parameters"]["trigger"]["payload"] == "{{ event.payload }}"


def test_retrain_storms_are_capped_per_model_not_by_a_shared_deployment_limit():
    # A deployment limit is shared by every model: one model's storm would cancel another's retrain.
    assert "concurrency_limit" not in DEPLOYMENTS["retrain_model/on-drift"]


def _schema(key: str) -> dict:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(_flow(key)).model_dump()


@pytest.mark.parametrize("key", MODEL_DEPLOYMENTS)
def test_every_model_deployment_takes_the_model_and_its_overrides_first(key):
    schema = _schema(key)
    assert list(schema["properties"])[:2] == ["model", "overrides"] and schema["required"] == ["model"]
    assert schema["properties"]["overrides"]["anyOf"][0]["$ref"] == "#/definitions/ConfigOverrides"


@pytest.mark.parametrize("key", sorted(DEPLOYMENTS))
def test_every_parameter_has_a_type_and_a_description_for_the_ui_form(key):
    schema = _schema(key)
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


def test_materialize_runs_hourly_on_the_repository_one_run_at_a_time():
    deployment = DEPLOYMENTS["materialize/hourly"]
    # Its parameters are what the flow takes, so the enforced schema accepts the scheduled runs.
    schema = _schema("materialize/hourly")
    assert set(deployment["parameters"]) <= set(schema["properties"]) and "model" not in schema["properties"]
    assert deployment["parameters"] == {"repo": "features"} and (ROOT / "features" / "feature_store.yaml").is_file()
    (schedule,) = deployment["schedules"]
    from prefect.client.schemas.schedules import CronSchedule

    # Prefect's own model validates the line; on the hour, every hour.
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    assert (cron.cron, cron.timezone) == ("0 * * * *", "UTC")
    # Two runs writing one interval at once is what the limit prevents; a due run finding one
    # still going is dropped (the next one is incremental and loads what it would have).
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_materialize_retries_an_unreachable_store_on_its_task():
    from tasks.features import materialize_features

    assert materialize_features.retries == 2 and materialize_features.retry_delay_seconds == [5, 30]


def test_make_up_leaves_the_materialize_form_and_schedule_as_written():
    from mlops.local.catalogue_sync import MONITOR_DEPLOYMENT, with_model_choices

    schema = _schema("materialize/hourly")
    # Identity, not equality: the sync only sends a schema it changed.
    assert with_model_choices(schema, ["churn-classifier"]) is schema
    assert MONITOR_DEPLOYMENT != ("materialize", "hourly")


def test_a_run_that_ends_under_a_state_name_of_its_own_is_not_taken_for_a_silent_one():
    # Prefect names a state-change event after the state: a run Completed as "Refused" sends
    # prefect.flow-run.Refused, and were that not expected, 90 s later it would be marked Crashed.
    from flows.states import STATE_NAMES

    automations = yaml.safe_load((ROOT / "deployments" / "automations.yaml").read_text())["automations"]
    (silent,) = [a for a in automations if a["name"] == "mlops-crash-silent-flow-runs"]
    expected = set(silent["trigger"]["expect"])
    for name in [*STATE_NAMES.values(), "Completed", "Failed", "Cancelled", "Crashed"]:
        assert f"prefect.flow-run.{name}" in expected, name
