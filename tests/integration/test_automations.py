"""deployments/automations.yaml on a real Prefect server: valid, and applied once however often."""

from __future__ import annotations

from pathlib import Path

from mlops.config import Settings
from mlops.local import stack
from mlops.local.prefect_rest import PrefectRest

REPO = Path(__file__).resolve().parents[2]


def test_stack_applies_the_automations_file_and_reapplying_keeps_one_copy(prefect_server, tmp_path):
    port = prefect_server.rsplit(":", 1)[1].split("/")[0]
    settings = Settings(MLOPS_HOME=str(tmp_path), MLOPS_PREFECT_PORT=port)
    assert settings.local_prefect_url == prefect_server
    first = stack.apply_automations(settings, REPO)
    second = stack.apply_automations(settings, REPO)
    assert len(first) == len(second) == 1 and first != second

    rest = PrefectRest(prefect_server)
    try:
        named = [a for a in rest.automations() if a["name"] == "mlops-crash-silent-flow-runs"]
    finally:
        rest.close()
    # The server accepted the trigger as written (a malformed one is refused with 422).
    assert [a["id"] for a in named] == second
    (automation,) = named
    assert automation["enabled"] and automation["trigger"]["posture"] == "Proactive"
    assert automation["actions"][0]["type"] == "change-flow-run-state"


def test_a_project_without_an_automations_file_applies_none(prefect_server, tmp_path):
    port = prefect_server.rsplit(":", 1)[1].split("/")[0]
    settings = Settings(MLOPS_HOME=str(tmp_path), MLOPS_PREFECT_PORT=port)
    assert stack.apply_automations(settings, tmp_path) == []
