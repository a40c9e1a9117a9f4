"""A small client of the Prefect server's REST API: deployment runs, flow runs and events.

The demo and the end-to-end tests watch the loop from outside, the way any other tool would: over
HTTP, with no Prefect settings or client state in their own process. Flows and tasks use
Prefect's Python API instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
# Statuses a busy Prefect server answers with when it did nothing (on SQLite a locked database gives
# 503): Prefect's own client retries these, and so do we. A timeout is retried only for reads,
# since a POST that timed out may have been carried out.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T], timeout: float, every: float = 1.0) -> T:
    """Call `probe` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class PrefectRest:
    """Start deployment runs, follow flow runs, read and emit events."""

    def __init__(self, api_url: str, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.api_url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, json: Any = None, idempotent: bool = True) -> httpx.Response:
        """One API call, retried with backoff while the server says it is too busy to have done it."""
        for delay in (*RETRY_DELAYS, None):
            try:
                response = self.http.request(method, path, json=json)
            except httpx.TransportError:  # includes timeouts
                if delay is None or not idempotent:
                    raise
            else:
                if response.status_code not in RETRY_STATUSES or delay is None:
                    response.raise_for_status()
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _get(self, path: str) -> Any:
        return self._request("GET", path).json()

    def _post(self, path: str, body: Any, idempotent: bool = True) -> Any:
        response = self._request("POST", path, body, idempotent)
        return response.json() if response.content else None

    def deployments(self, tags: list[str] | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"limit": 200}
        if tags:
            body["deployments"] = {"tags": {"all_": tags}}
        return self._post("/deployments/filter", body)

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        return self._get(f"/deployments/name/{flow}/{name}")

    def update_deployment(self, deployment_id: str, update: dict[str, Any]) -> None:
        self._request("PATCH", f"/deployments/{deployment_id}", update)

    def delete_deployment_schedule(self, deployment_id: str, schedule_id: str) -> None:
        self._request("DELETE", f"/deployments/{deployment_id}/schedules/{schedule_id}")

    def deployment_id(self, flow: str, name: str) -> str:
        return self._get(f"/deployments/name/{flow}/{name}")["id"]

    def start_run(self, flow: str, name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the UI's Run button does: a run of the deployment, with parameters merged over its own."""
        path = f"/deployments/{self.deployment_id(flow, name)}/create_flow_run"
        return self._post(path, {"parameters": parameters or {}}, idempotent=False)

    def flow_name(self, flow_id: str) -> str:
        return self._get(f"/flows/{flow_id}")["name"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self._get(f"/flow_runs/{run_id}")

    def wait_run(self, run_id: str, timeout: float = 600, on_state: Callable[[dict], None] | None = None) -> dict:
        """Follow a run until it ends; `on_state` sees each new state as it happens."""
        seen: list[str | None] = [None]

        def ended() -> dict | None:
            run = self.flow_run(run_id)
            if on_state is not None and run["state_name"] != seen[0]:
                seen[0] = run["state_name"]
                on_state(run)
            return run if run["state_type"] in TERMINAL_STATES else None

        return wait_for(f"flow run {run_id}", ended, timeout)

    def run(self, flow: str, name: str, parameters: dict[str, Any] | None = None, timeout: float = 600) -> dict:
        return self.wait_run(self.start_run(flow, name, parameters)["id"], timeout)

    def runs_of(self, flow: str, name: str) -> list[dict[str, Any]]:
        """Every run of a deployment, oldest first."""
        body = {"deployments": {"id": {"any_": [self.deployment_id(flow, name)]}}, "sort": "EXPECTED_START_TIME_ASC"}
        return self._post("/flow_runs/filter", body)

    def task_runs(self, flow_run_ids: list[str], name_like: str | None = None) -> list[dict[str, Any]]:
        """Task runs of these flow runs, optionally only those whose name contains `name_like`."""
        body: dict[str, Any] = {"flow_runs": {"id": {"any_": flow_run_ids}}}
        if name_like:
            body["task_runs"] = {"name": {"like_": name_like}}
        return self._post("/task_runs/filter", body)

    def child_runs(self, parent_run_id: str) -> list[dict[str, Any]]:
        """Subflow runs started by a run (their parent task runs belong to it)."""
        ids = [t["id"] for t in self.task_runs([parent_run_id])]
        if not ids:
            return []
        body = {"flow_runs": {"parent_task_run_id": {"any_": ids}}, "sort": "EXPECTED_START_TIME_ASC"}
        return self._post("/flow_runs/filter", body)

    def artifacts_of(self, run_id: str) -> list[dict[str, Any]]:
        """The artifacts (summaries, reports) a flow run published, newest first."""
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "CREATED_DESC"}
        return self._post("/artifacts/filter", body)

    def events(self, name: str, since: datetime) -> list[dict[str, Any]]:
        body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}, "limit": 50}
        return self._post("/events/filter", body)["events"]

    def apply_automation(self, automation: dict[str, Any]) -> str:
        """Create `automation`, replacing any of the same name, so applying a file twice keeps one copy."""
        name = automation["name"]
        existing = self._post("/automations/filter", {"automations": {"name": {"any_": [name]}}})
        for old in existing:
            self._request("DELETE", f"/automations/{old['id']}")
        return self._post("/automations/", automation, idempotent=False)["id"]

    def block_ids(self, name: str, type_slug: str | None = None) -> list[str]:
        """Ids of the named (non-anonymous) block documents, of one block type if `type_slug` is given."""
        query: dict[str, Any] = {"block_documents": {"name": {"any_": [name]}, "is_anonymous": {"eq_": False}}}
        if type_slug:
            query["block_types"] = {"slug": {"any_": [type_slug]}}
        return [doc["id"] for doc in self._post("/block_documents/filter", query)]

    def save_block(self, type_slug: str, name: str, data: dict[str, Any]) -> str:
        """Create or replace the data of the block document `name` of block type `type_slug`; its id."""
        existing = self.block_ids(name, type_slug)
        if existing:
            self._request("PATCH", f"/block_documents/{existing[0]}", {"data": data, "merge_existing_data": False})
            return existing[0]
        block_type = self._get(f"/block_types/slug/{type_slug}")
        schemas = self._post("/block_schemas/filter", {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}})
        if not schemas:
            raise RuntimeError(f"the Prefect server has no schema for block type {type_slug}")
        body = {"name": name, "block_type_id": block_type["id"], "block_schema_id": schemas[0]["id"], "data": data}
        return self._post("/block_documents/", body, idempotent=False)["id"]

    def delete_automations(self, names: list[str]) -> None:
        for old in self._post("/automations/filter", {"automations": {"name": {"any_": names}}}):
            self._request("DELETE", f"/automations/{old['id']}")

    def automations(self) -> list[dict[str, Any]]:
        return self._post("/automations/filter", {})

    def emit(self, name: str, resource: dict[str, str], payload: dict[str, Any],
             related: list[dict[str, str]] | None = None) -> str:
        """Send one event as any producer would; returns its id."""
        event_id = str(uuid.uuid4())
        event = {"id": event_id, "occurred": datetime.now(UTC).isoformat(), "event": name,
                 "resource": resource, "payload": payload, "related": related or []}
        self._post("/events", [event], idempotent=False)
        return event_id
