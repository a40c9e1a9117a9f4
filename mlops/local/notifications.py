"""Who is told: the notification block `mlops-notify` and the automations that send through it.

`mlops stack up` saves MLOPS_NOTIFY_WEBHOOK_URL as an `mlops-webhook` block of that name
(tasks/notify.py: the delivery promise of docs/notifications.md; the URL lives in Prefect's block
store as a secret, never in a file of the repository) and applies
deployments/notifications.yaml, whose actions name the block (`block: mlops-notify`) instead of
an id that differs on every server. Without the URL, a block of that name made by hand (a Slack
webhook, an Apprise e-mail URL) is used; with neither, nothing is applied and `make up` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops.local.prefect_rest import PrefectRest

BLOCK_NAME = "mlops-notify"
# tasks/notify.py's block type; registered on the server by `prefect block register`.
WEBHOOK_TYPE = "mlops-webhook"
WEBHOOK_MODULE = "tasks.notify"


def register_webhook_type(api_url: str) -> None:
    """Tell the server the block type's schema (its class is loaded there by an entry point)."""
    import os
    import subprocess
    import sys

    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect) if prefect.exists() else "prefect", "block", "register", "-m", WEBHOOK_MODULE]
    proc = subprocess.run(command, env={**os.environ, "PREFECT_API_URL": api_url}, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"registering the {WEBHOOK_TYPE} block type failed (exit {proc.returncode}): {tail[0]}")


def notification_block(rest: PrefectRest, webhook_url: str | None) -> str | None:
    """The id of the block notifications go through: saved from the URL, else one made by hand."""
    if webhook_url:
        register_webhook_type(rest.api_url)
        return rest.save_block(WEBHOOK_TYPE, BLOCK_NAME, {"url": webhook_url})
    existing = rest.block_ids(BLOCK_NAME)
    return existing[0] if existing else None


def with_block(automation: dict[str, Any], block_id: str) -> dict[str, Any]:
    """The automation with each action's `block: <name>` turned into the block's id."""
    actions = []
    for action in automation.get("actions", []):
        action = dict(action)
        if action.pop("block", None) is not None:
            action["block_document_id"] = block_id
        actions.append(action)
    return {**automation, "actions": actions}


def apply_notifications(api_url: str, path: Path, webhook_url: str | None) -> str:
    """Save the block and apply the file's automations; one line saying what was done."""
    if not path.is_file():
        return f"notifications: skipped: no {path}"
    automations = (yaml.safe_load(path.read_text()) or {}).get("automations") or []
    rest = PrefectRest(api_url)
    try:
        block_id = notification_block(rest, webhook_url)
        if block_id is None:
            return (f"notifications: off: set MLOPS_NOTIFY_WEBHOOK_URL (or create a notification block "
                    f"named {BLOCK_NAME}) and run `make up` again")
        for automation in automations:
            rest.apply_automation(with_block(automation, block_id))
    finally:
        rest.close()
    return f"notifications: {len(automations)} automations send through block {BLOCK_NAME}"
