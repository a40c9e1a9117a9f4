"""deployments/notifications.yaml on a real Prefect server: each event reaches a local webhook once,
naming the model, the version and the reason; the URL lives in a Prefect block, not in the file."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import yaml

from mlops import audit, events
from mlops.local.notifications import BLOCK_NAME, WEBHOOK_TYPE, apply_notifications
from mlops.local.prefect_rest import PrefectRest, wait_for
from tests.loopback import Listener, reply

REPO = Path(__file__).resolve().parents[2]
FILE = REPO / "deployments" / "notifications.yaml"


def _body(request) -> dict:
    return json.loads(request.rfile.read(int(request.headers.get("content-length", 0))) or b"{}")


class _Receiver:
    """A webhook on loopback that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []

        def answer(request) -> None:
            self.bodies.append(_body(request))
            reply(request, 200)

        self.listener = Listener(answer)
        self.url = self.listener.url()

    def about(self, model: str) -> list[str]:
        return [b["body"] for b in self.bodies if f"model={model} " in b.get("body", "")]

    def shutdown(self) -> None:
        self.listener.close()


def _record(action: str, model: str, to_version: str, reason: str) -> audit.AuditRecord:
    return audit.new_record(action, model, from_version="3", to_version=to_version, decision={}, reason=reason,
                            evidence=audit.build_evidence(), flow_run_id=None, actor="test")


def test_without_a_url_or_a_block_nothing_is_applied(prefect_server):
    rest = PrefectRest(prefect_server)
    try:
        assert rest.block_ids(BLOCK_NAME) == []  # first in this file: no test has saved the block yet
        line = apply_notifications(prefect_server, FILE, None)
        assert line.startswith("notifications: off: set MLOPS_NOTIFY_WEBHOOK_URL")
        assert not [a for a in rest.automations() if a["name"].startswith("mlops-notify-")]
    finally:
        rest.close()


def test_every_kind_of_event_notifies_once_with_model_version_and_reason(prefect_server):
    names = [a["name"] for a in yaml.safe_load(FILE.read_text())["automations"]]
    receiver = _Receiver()
    rest = PrefectRest(prefect_server)
    try:
        told = apply_notifications(prefect_server, FILE, receiver.url)
        assert told == f"notifications: {len(names)} automations send through block {BLOCK_NAME}"
        # The URL went into the block, and the automations name the block by id only.
        applied = [a for a in rest.automations() if a["name"] in names]
        assert len(applied) == len(names)
        assert all(receiver.url not in json.dumps(a) and a["actions"][0]["block_document_id"] for a in applied)
        # Applying again keeps one copy of each and the same block.
        apply_notifications(prefect_server, FILE, receiver.url)
        assert len([a for a in rest.automations() if a["name"] in names]) == len(names)
        assert len(rest.block_ids(BLOCK_NAME)) == 1

        # The automations service loads new automations on its own clock: wait until one answers.
        def warm() -> list[str]:
            rest.emit(events.DRIFT_DETECTED, events.model_resource("warm-up"),
                      {"champion_version": "1", "drift_share": 0.5, "drifted_columns": ["age"]})
            time.sleep(2)
            return receiver.about("warm-up")
        wait_for("the notification automations to be live", warm, 120, every=0)

        run = f"run-{uuid.uuid4().hex[:6]}"
        rest.emit(events.DRIFT_DETECTED, events.model_resource("m-drift"),
                  {"champion_version": "3", "drift_share": 0.6, "drifted_columns": ["age", "plan"]})
        rest.emit(events.PERFORMANCE_DEGRADED, events.model_resource("m-degraded"),
                  {"champion_version": "3", "reason": "accuracy 0.71 below the bound 0.75"})
        for action, model in ((audit.ACTION_PROMOTED, "m-promoted"), (audit.ACTION_REFUSED, "m-refused"),
                              (audit.ACTION_ROLLED_BACK, "m-rolled-back")):
            rest.emit(*events.event_for(_record(action, model, "4", f"{action} because of the evidence")))
        rest.emit(*events.approval_requested("m-approval", "5", "4", "challenger roc_auc 0.81 >= 0.80", 60))
        # A flow run of a deployment failing, as Prefect's own state event says it.
        rest.emit("prefect.flow-run.Failed", {"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}",
                                              "prefect.resource.name": run},
                  {"validated_state": {"type": "FAILED", "name": "Failed", "message": "boom in fit-model"}},
                  related=[{"prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
                            "prefect.resource.role": "deployment"}])
        expected = {
            "m-drift": ["version=3", "drift share 0.6 in age, plan"],
            "m-degraded": ["version=3", "accuracy 0.71 below the bound 0.75"],
            "m-promoted": ["version=4", "event=promoted", "promoted because of the evidence"],
            "m-refused": ["version=4", "event=refused", "refused because of the evidence"],
            "m-rolled-back": ["version=4", "event=rolled-back", "rolled-back because of the evidence"],
            "m-approval": ["version=5", "approval-requested", "roc_auc 0.81", "mlops approve --model m-approval"],
        }
        wait_for("a notification for every event", lambda: all(receiver.about(m) for m in expected)
                 and any(run in b["body"] for b in receiver.bodies), 120)
        # A sentinel sent after them all: once it is in, a duplicate of any earlier one would be too.
        rest.emit(events.DRIFT_DETECTED, events.model_resource("sentinel"),
                  {"champion_version": "1", "drift_share": 0.5, "drifted_columns": ["age"]})
        wait_for("the sentinel's notification", lambda: receiver.about("sentinel"), 120)
        time.sleep(2)
        for model, parts in expected.items():
            (body,) = receiver.about(model)
            assert all(part in body for part in parts), body
        (failed,) = [b["body"] for b in receiver.bodies if run in b["body"]]
        assert "prefect.flow-run.Failed" in failed and "boom in fit-model" in failed
    finally:
        rest.delete_automations(names)  # the server is shared with later tests
        rest.close()
        receiver.shutdown()


class _Hanging:
    """A webhook that reads each POST and never answers; keeps each body's text and Idempotency-Key."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.released = threading.Event()

        def answer(request) -> None:
            self.seen.append((_body(request).get("body", ""), request.headers.get("Idempotency-Key")))
            self.released.wait(30)

        self.listener = Listener(answer)
        self.url = self.listener.url()

    def about(self, model: str) -> list[str | None]:
        return [key for body, key in self.seen if f"model={model} " in body]

    def shutdown(self) -> None:
        self.listener.close()


def test_a_webhook_that_never_answers_gets_each_notification_the_promised_times(prefect_server):
    names = [a["name"] for a in yaml.safe_load(FILE.read_text())["automations"]]
    hook = _Hanging()
    rest = PrefectRest(prefect_server)
    try:
        apply_notifications(prefect_server, FILE, hook.url)
        # The promise with small numbers (block fields), so the test is quick: 2 attempts, 0.5 s each.
        rest.save_block(WEBHOOK_TYPE, BLOCK_NAME, {"url": hook.url, "attempts": 2, "timeout_seconds": 0.5,
                                                   "backoff_seconds": 0.1})

        def drift(model: str) -> None:
            rest.emit(events.DRIFT_DETECTED, events.model_resource(model),
                      {"champion_version": "1", "drift_share": 0.5, "drifted_columns": ["age"]})

        def warm() -> list:
            drift("warm-up")
            time.sleep(2)
            return hook.about("warm-up")
        wait_for("the notification automations to be live", warm, 120, every=0)

        drift("m-hang")
        wait_for("the notification's attempts", lambda: len(hook.about("m-hang")) >= 2, 60, every=0.2)
        # The server takes retries before new messages: once the sentinel's attempts are in, a third
        # copy of m-hang's (Prefect's own redelivery, four in all before) would have arrived first.
        drift("sentinel")
        wait_for("the sentinel's attempts", lambda: len(hook.about("sentinel")) >= 2, 60, every=0.2)
        keys = hook.about("m-hang")
        assert len(keys) == 2 and keys[0] and len(set(keys)) == 1, hook.seen
        assert len(hook.about("sentinel")) == 2 and hook.about("sentinel")[0] != keys[0]
    finally:
        rest.delete_automations(names)
        rest.close()
        hook.released.set()
        hook.shutdown()
