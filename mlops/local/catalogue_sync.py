"""What `make up` sets on the deployments from the catalogue, which prefect.yaml cannot know.

prefect.yaml declares the deployments once, for any model. The catalogue (configs/*.yaml) decides
which models exist and when each one's drift check runs, so after `prefect deploy` this sets:

- the `model` field of every catalogue deployment's parameter form to a choice among the
  catalogue's names (with the schema enforced, the server then refuses a run for any other name:
  a removed model's drift events start nothing);
- one schedule per model on the monitor deployment, from its `monitoring.schedule`, carrying the
  model's name as its parameter (slug `model-<name>`), so each model keeps its own cadence and can
  be paused in the UI on its own.

A project deployment that is not per model (materialize/hourly: it takes the Feast repository)
has no `model` field and is not the monitor: its form and its schedule stay as prefect.yaml
wrote them, and the report does not count it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mlops.catalogue import Catalogue
from mlops.config import MonitoringSchedule
from mlops.local.prefect_rest import PrefectRest

# The deployment whose schedules come from the catalogue (prefect.yaml's monitor/scheduled).
MONITOR_DEPLOYMENT = ("monitor", "scheduled")
MODEL_PARAMETER = "model"
# Only deployments carrying this tag are touched (prefect.yaml tags every one of the project's).
PROJECT_TAG = "mlops"


def schedule_slug(model_name: str) -> str:
    return f"model-{model_name}"


def with_model_choices(schema: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The parameter schema with `model` a choice among `names`; unchanged without such a field
    or without names (an empty choice would make every run invalid)."""
    properties = schema.get("properties") or {}
    if MODEL_PARAMETER not in properties or not names:
        return schema
    updated = copy.deepcopy(schema)
    field = updated["properties"][MODEL_PARAMETER]
    field["enum"] = list(names)
    field["type"] = "string"
    field["description"] = "One of the catalogue's models (configs/*.yaml); `make up` refreshes this list."
    return updated


def _schedule(spec: MonitoringSchedule) -> dict[str, Any]:
    if spec.interval_minutes is not None:
        return {"interval": spec.interval_minutes * 60.0, "timezone": spec.timezone}
    return {"cron": spec.cron, "timezone": spec.timezone}


def monitor_schedules(catalogue: Catalogue) -> list[dict[str, Any]]:
    """One deployment schedule per model, as the Prefect API takes it."""
    return [
        {
            "schedule": _schedule(entry.config.monitoring.schedule),
            "active": entry.config.monitoring.schedule.active,
            "parameters": {MODEL_PARAMETER: name},
            "slug": schedule_slug(name),
        }
        for name, entry in sorted(catalogue.entries.items())
    ]


@dataclass(frozen=True)
class SyncReport:
    deployments: list[str]
    schedules: list[str]

    def lines(self) -> list[str]:
        return [
            f"model choice set on {len(self.deployments)} deployments: {', '.join(self.deployments) or 'none'}",
            f"drift-check schedules: {', '.join(self.schedules) or 'none'}",
        ]


def _project_deployments(rest: PrefectRest) -> list[dict[str, Any]]:
    return rest.deployments(tags=[PROJECT_TAG])


def sync_catalogue(rest: PrefectRest, catalogue: Catalogue) -> SyncReport:
    """Set the model choices and the monitor schedules of the project's deployments."""
    names = catalogue.names
    touched: list[str] = []
    schedules: list[str] = []
    for deployment in _project_deployments(rest):
        flow = rest.flow_name(deployment["flow_id"])
        key = f"{flow}/{deployment['name']}"
        update: dict[str, Any] = {}
        schema = deployment.get("parameter_openapi_schema") or {}
        chosen = with_model_choices(schema, names)
        if chosen is not schema:
            update["parameter_openapi_schema"] = chosen
            touched.append(key)
        stale: list[str] = []
        if (flow, deployment["name"]) == MONITOR_DEPLOYMENT:
            update["schedules"] = monitor_schedules(catalogue)
            schedules = [_describe(s) for s in update["schedules"]]
            # With slugs the API updates and adds schedules but keeps the others: a removed
            # model's schedule is deleted by name.
            wanted = {s["slug"] for s in update["schedules"]}
            stale = [s["id"] for s in deployment.get("schedules") or [] if s.get("slug") not in wanted]
        if update:
            rest.update_deployment(deployment["id"], update)
        for schedule_id in stale:
            rest.delete_deployment_schedule(deployment["id"], schedule_id)
    return SyncReport(touched, schedules)


def _describe(schedule: dict[str, Any]) -> str:
    spec = schedule["schedule"]
    cadence = f"cron '{spec['cron']}'" if "cron" in spec else f"every {spec['interval'] / 60:g} min"
    paused = "" if schedule["active"] else " (paused)"
    return f"{schedule['parameters'][MODEL_PARAMETER]} {cadence}{paused}"
