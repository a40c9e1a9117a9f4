"""Model cards and slice gates in the `train` flow (real Prefect test server, real MLflow store), and `mlops card`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.train import train
from mlops import cli
from mlops.cards import SECTIONS
from mlops.config import parse_config
from mlops.data import write_frame
from mlops.errors import QualityGateFailed
from mlops.evaluation.behaviour import REPORT_ARTIFACT
from mlops.local.simulate import simulate_churn
from mlops.registry import Registry

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "churn-card"


def _raw(data_uri: str, **sections) -> dict:
    return {
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {"name": MODEL, "params": {"max_iter": 50}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"min_metrics": {"roc_auc": 0.6}, "min_slice_metrics": {"roc_auc": 0.5},
                  "max_slice_gap": {"roc_auc": 0.5}},
        "evaluation": {"segments": ["contract", "region"], "min_slice_rows": 30, "bootstrap_samples": 100},
        "card": {"purpose": "Flag customers likely to cancel", "owner": "retention team",
                 "intended_use": "ranking customers for a retention call", "limitations": ["Synthetic customers"]},
        **sections,
    }


@pytest.fixture
def churn_uri(tmp_path) -> str:
    return write_frame(simulate_churn(3000, seed=21), str(tmp_path / "churn.parquet"))


def _cli(args: list[str]):
    return CliRunner().invoke(cli.app, args)


def test_every_registered_version_gets_a_card_with_every_section(mlflow_store, churn_uri, tmp_path):
    state = train(config=parse_config(_raw(churn_uri)), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    stored = {a.path for a in client.list_artifacts(result.run_id, "card")}
    assert stored == {"card/model_card.md", "card/model_card.html", "card/model_card.json"}
    registry = Registry(mlflow_store)
    markdown = registry.read_run_text(result.run_id, "card/model_card.md")
    for title in SECTIONS:
        assert f"## {title}" in markdown
    assert f"# Model card: {MODEL} v1" in markdown
    assert "Flag customers likely to cancel" in markdown and "retention team" in markdown
    card = registry.read_run_json(result.run_id, "card/model_card.json")
    # Every section holds evidence, not a placeholder.
    assert card["data"]["rows"]["total"] == 3000 and card["data"]["fingerprint"] == result.data_fingerprint
    assert card["data"]["time_range"]["column"] == "event_time"
    assert all("low" in entry for name, entry in card["metrics"].items() if name in ("roc_auc", "accuracy"))
    assert {s["segment"] for s in card["slices"]["slices"]} == {"contract", "region"}
    assert card["calibration"]["bins"] and card["explanations"]["partial_dependence"]
    assert card["lineage"]["data_fingerprint"] == result.data_fingerprint and "git_commit" in card["lineage"]
    assert card["limitations"][0] == "Synthetic customers"
    assert "## Behavioural tests\n\nNone declared." in markdown
    html = registry.read_run_text(result.run_id, "card/model_card.html")
    assert html.count('src="data:image/png;base64,') >= 4
    assert "evaluation/slices.json" in {a.path for a in client.list_artifacts(result.run_id, "evaluation")}

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert "## Slice metrics" in by_key[f"card-{MODEL}"].data

    # `mlops card` rebuilds it with what the run learned since: a behavioural report.
    registry.log_json(result.run_id, {"passed": False, "tests": [
        {"name": "charges-up-churn-up", "kind": "directional", "passed": False, "detail": "2 of 40 rows fell",
         "failing_cases": [{"monthly_charges": 30.0}]},
    ]}, REPORT_ARTIFACT)
    config_file = tmp_path / "card.yaml"
    config_file.write_text(yaml.safe_dump(_raw(churn_uri)))
    out = tmp_path / "out" / "card.html"
    out.parent.mkdir()
    written = _cli(["card", "--config", str(config_file), "--version", "1", "--out", str(out)])
    assert written.exit_code == 0, written.output
    page = out.read_text()
    assert "<h2>Behavioural tests</h2>" in page and "charges-up-churn-up" in page
    printed = _cli(["card", "--config", str(config_file)])
    assert printed.exit_code == 0 and printed.stdout.startswith(f"# Model card: {MODEL} v1")
    missing = _cli(["card", "--config", str(config_file), "--version", "7"])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == f"error: model {MODEL} has no version 7 (versions: 1)"


def test_a_slice_below_its_gate_registers_nothing_and_is_named(mlflow_store, churn_uri):
    raw = _raw(churn_uri, gates={"min_slice_metrics": {"roc_auc": 0.99}})
    state = train(config=parse_config(raw), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, QualityGateFailed) and error.exit_code == 4
    assert str(error).startswith("slice gate failed: roc_auc ") and "on slice " in str(error)
    assert "contract=" in str(error) or "region=" in str(error)
    client = MlflowClient(tracking_uri=mlflow_store, registry_uri=mlflow_store)
    assert client.search_model_versions(f"name = '{MODEL}'") == []
    # The failed run keeps the slice evidence.
    [run] = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    slices = json.loads(Path(client.download_artifacts(run.info.run_id, "evaluation/slices.json")).read_text())
    assert {s["segment"] for s in slices["slices"]} == {"contract", "region"}


def test_card_of_a_model_with_no_versions_is_one_line_exit_2(mlflow_store, churn_uri, tmp_path):
    config_file = tmp_path / "card.yaml"
    config_file.write_text(yaml.safe_dump(_raw(churn_uri)))
    result = _cli(["card", "--config", str(config_file)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: model {MODEL} has no registered versions"
