"""The `deploy` and `rollback` flows against a real Prefect server and temporary MLflow stores.

Training is the slow part, so three versions are trained once per module (v1 and v2 from the same
data and config, hence identical; v3 a DummyClassifier) and every test starts from a fresh copy of that
store. The first test trains for itself, to run the whole train-then-deploy path.
"""

from __future__ import annotations

import contextvars
import http.server
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from flows.deploy import deploy
from flows.rollback import rollback
from flows.train import train
from mlops.config import PipelineConfig, parse_config
from mlops.data import write_frame
from mlops.errors import ConfigError, ModelNotFound, NothingToApprove
from mlops.local.prefect_rest import wait_for
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.local.stack import free_port
from mlops.registry import Registry
from tasks.approval import answer_approval, resume_with_answer, waiting_deploys
from tests.timing import LENIENT_PROMOTION

pytestmark = pytest.mark.usefixtures("prefect_api")

MODEL = "churn-deploy"


def make_config(data_uri: str, **sections) -> PipelineConfig:
    raw = {
        "dataset": {"uri": data_uri, "target": "churned", "timestamp": "event_time"},
        "model": {"name": MODEL, "estimator": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"min_metrics": {"roc_auc": 0.6}},
        "rollback": {"enabled": False},
    }
    promotion = {**LENIENT_PROMOTION, **sections.pop("promotion", {})}
    raw.update(sections, promotion=promotion)
    return parse_config(raw)


def _use_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{home / 'mlflow.db'}"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="module")
def trained(prefect_api, mlflow_template, tmp_path_factory) -> tuple[Path, str]:
    """A store holding v1 and v2 (identical HistGradientBoosting) and v3 (DummyClassifier), no aliases moved."""
    dummy = {"model": {"name": MODEL, "estimator": "sklearn.dummy.DummyClassifier"}, "gates": {}}
    return _train_versions(tmp_path_factory.mktemp("trained-home"), mlflow_template, simulate_churn(2000, seed=31),
                           make_config, dummy)


def _train_versions(home: Path, mlflow_template: Path, frame, make, dummy: dict) -> tuple[Path, str]:
    """Train v1 and v2 (the same data and config) and v3 (`dummy`'s sections) into a store in `home`."""
    shutil.copy(mlflow_template, home / "mlflow.db")
    data_uri = write_frame(frame, str(home / "data.parquet"))
    with pytest.MonkeyPatch.context() as mp:
        _use_store(home, mp)
        for config in (make(data_uri), make(data_uri), make(data_uri, **dummy)):
            assert train(config=config, return_state=True).is_completed()
    return home, data_uri


@pytest.fixture
def store(trained, tmp_path, monkeypatch) -> tuple[str, str]:
    """A private copy of the trained store (model artifacts stay shared, read-only); (uri, data uri)."""
    return _private_store(trained, tmp_path, monkeypatch)


def _private_store(trained: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(trained[0] / "mlflow.db", home / "mlflow.db")
    return _use_store(home, monkeypatch), trained[1]


def aliases(uri: str) -> dict[str, str]:
    found = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(MODEL).aliases
    return {alias: str(version) for alias, version in found.items()}


def run_deploy(config: PipelineConfig, **params):
    state = deploy(config=config, return_state=True, **params)
    assert state.is_completed(), state.message
    result = state.result()
    # The runs list tells a refusal or a rollback from a promotion: the Completed state is named.
    assert state.name == {"refused": "Refused", "rolled-back": "RolledBack"}.get(result.status, "Completed")
    return result, str(state.state_details.flow_run_id)


def _state(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


@pytest.fixture
def alias_writes(monkeypatch) -> Iterator[list[tuple[str, str, str | None, dict[str, str]]]]:
    """Record every alias write with the alias state right after it (to prove champion never vanishes)."""
    writes: list[tuple[str, str, str | None, dict[str, str]]] = []
    original_set, original_delete = MlflowClient.set_registered_model_alias, MlflowClient.delete_registered_model_alias

    def spy_set(self, name, alias, version):
        original_set(self, name, alias, version)
        writes.append(("set", alias, str(version), _state(self, name)))

    def spy_delete(self, name, alias):
        original_delete(self, name, alias)
        writes.append(("delete", alias, None, _state(self, name)))

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", spy_set)
    monkeypatch.setattr(MlflowClient, "delete_registered_model_alias", spy_delete)
    yield writes


def model_events(event_name: str, flow_run_id: str, timeout: float = 30.0) -> list:
    """Events of this model and name emitted by one flow run, read back from the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=[event_name]), resource=EventResourceFilter(id=[f"mlops.model.{MODEL}"])
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = [e for e in client.read_events(filter=event_filter, limit=50).events
                     if e.payload.get("flow_run_id") == flow_run_id]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


# -- promotion ------------------------------------------------------------------------------------


def test_train_then_deploy_makes_the_first_champion(mlflow_store, tmp_path):
    data_uri = write_frame(simulate_churn(2000, seed=32), str(tmp_path / "churn.parquet"))
    config = make_config(data_uri)
    assert train(config=config, return_state=True).is_completed()

    result, run_id = run_deploy(config)
    assert (result.status, result.candidate_version, result.champion_version) == ("promoted", "1", "1")
    assert result.previous_champion_version is None
    assert result.reason.startswith("first champion (roc_auc ")
    assert aliases(mlflow_store) == {"challenger": "1", "champion": "1"}  # staging removed
    assert result.smoke["passed"] and result.holdout["rows"] == 500

    records = Registry(mlflow_store).read_audit(MODEL)
    assert [(r.action, r.from_version, r.to_version) for r in records] == [("promoted", None, "1")]
    record = records[0]
    assert record.flow_run_id == run_id and record.actor.endswith("via deploy flow")
    assert record.evidence["metrics"]["challenger"]["roc_auc"] == result.metrics["challenger"]["roc_auc"]
    assert record.evidence["holdout"]["rows"] == 500 and len(record.evidence["holdout"]["fingerprint"]) == 64
    assert record.evidence["validation"]["success"] is True
    tags = Registry(mlflow_store).get_version(MODEL, "1").tags
    assert tags["audit.last_action"] == "promoted" and tags["audit.last_record"] == record.artifact_name

    events = model_events("mlops.model.promoted", run_id)
    assert len(events) == 1
    assert events[0].payload["to_version"] == "1" and events[0].payload["audit_record_id"] == record.record_id


def test_equal_challenger_is_promoted_and_the_old_champion_kept(store, alias_writes):
    uri, data_uri = store
    config = make_config(data_uri)
    run_deploy(config, challenger_version="1")
    alias_writes.clear()

    result, _ = run_deploy(config, challenger_version="2")
    assert (result.status, result.champion_version, result.previous_champion_version) == ("promoted", "2", "1")
    assert result.metrics["challenger"] == result.metrics["champion"]  # same data, same config
    assert "equal" in result.reason
    assert aliases(uri) == {"champion": "2", "previous-champion": "1", "challenger": "3"}
    # The exact order of alias writes, and a champion after every single one of them.
    assert [(op, alias, version) for op, alias, version, _ in alias_writes] == [
        ("set", "staging", "2"), ("set", "previous-champion", "1"), ("set", "champion", "2"), ("delete", "staging", None)
    ]
    assert all("champion" in state for *_, state in alias_writes)
    actions = [(r.action, r.from_version, r.to_version) for r in Registry(uri).read_audit(MODEL)]
    assert actions == [("promoted", None, "1"), ("promoted", "1", "2")]


def test_significance_refuses_a_tie_that_tolerance_accepts(store):
    uri, data_uri = store
    run_deploy(make_config(data_uri), challenger_version="1")
    strict = make_config(data_uri, promotion={"significance": "bootstrap", "bootstrap_samples": 200})
    result, _ = run_deploy(strict, challenger_version="2")
    assert result.status == "refused"
    assert "bootstrap: one-sided p 1.0000 >= alpha 0.05" in result.reason
    assert result.paired_evidence["p_value"] == 1.0
    assert aliases(uri)["champion"] == "1"


def test_deploying_the_champion_changes_nothing(store):
    uri, data_uri = store
    run_deploy(make_config(data_uri), challenger_version="1")
    result, _ = run_deploy(make_config(data_uri), challenger_version="1")
    assert result.status == "unchanged" and result.audit_records == []
    assert len(Registry(uri).read_audit(MODEL)) == 1


# -- refusals -------------------------------------------------------------------------------------


def test_worse_challenger_is_refused_with_both_metrics_recorded(store, alias_writes):
    uri, data_uri = store
    config = make_config(data_uri, gates={})
    run_deploy(config, challenger_version="1")
    alias_writes.clear()

    state = deploy(config=config, return_state=True)  # the challenger alias is on v3, the dummy
    assert state.is_completed()  # a refusal is a completed run, not a failed one
    result = state.result()
    assert (result.status, result.candidate_version, result.champion_version) == ("refused", "3", "1")
    assert "challenger roc_auc 0.5000 vs champion" in result.reason and "worse by" in result.reason
    assert aliases(uri)["champion"] == "1" and "staging" not in aliases(uri)
    assert alias_writes == []  # refused before staging: no alias was touched

    records = Registry(uri).read_audit(MODEL)
    assert [r.action for r in records] == ["promoted", "refused"]
    refused = records[-1]
    assert (refused.from_version, refused.to_version) == ("1", "3")
    assert refused.evidence["metrics"]["challenger"]["roc_auc"] == 0.5
    assert refused.evidence["metrics"]["champion"]["roc_auc"] > 0.6
    assert refused.decision["promote"] is False
    assert Registry(uri).get_version(MODEL, "3").tags["audit.last_action"] == "refused"
    # The evidence points the reviewer at the challenger's card, stored with its training run.
    card = refused.evidence["card"]
    assert card["command"] == f"mlops card --model {MODEL} --version 3 --out card.html"
    assert Registry(uri).read_run_json(card["run_id"], "card/model_card.json")["version"] == "3"
    run_id = str(state.state_details.flow_run_id)
    assert model_events("mlops.model.rejected", run_id)[0].payload["to_version"] == "3"


def test_compare_worst_slice_is_checked_and_names_the_slice_when_it_refuses(store):
    uri, data_uri = store
    config = make_config(data_uri, gates={}, evaluation={"segments": ["contract"]},
                         promotion={"compare_worst_slice": True})
    run_deploy(config, challenger_version="1")
    equal, _ = run_deploy(config, challenger_version="2")  # same data and config as v1
    assert equal.status == "promoted"
    [check] = [c for c in equal.decision["checks"] if c["name"] == "worst-slice:roc_auc"]
    assert check["passed"] and "worst slice: challenger contract=" in check["detail"]
    worse, _ = run_deploy(config, challenger_version="3")  # the dummy: 0.5 on every slice
    assert worse.status == "refused"
    assert "worst slice: challenger contract=" in worse.reason and "vs champion contract=" in worse.reason
    refused = Registry(uri).read_audit(MODEL)[-1]
    assert any(c["name"] == "worst-slice:roc_auc" and not c["passed"] for c in refused.decision["checks"])


def test_first_model_failing_a_gate_is_refused_and_no_champion_appears(store):
    uri, data_uri = store
    result, _ = run_deploy(make_config(data_uri, gates={"min_metrics": {"roc_auc": 0.99}}), challenger_version="1")
    assert result.status == "refused" and result.champion_version is None
    assert "fails the quality gate: roc_auc" in result.reason and "< min 0.99" in result.reason
    assert "champion" not in aliases(uri)
    assert [r.action for r in Registry(uri).read_audit(MODEL)] == ["refused"]


def test_smoke_failure_refuses_and_keeps_the_champion(store, alias_writes):
    uri, data_uri = store
    run_deploy(make_config(data_uri), challenger_version="1")
    alias_writes.clear()
    result, _ = run_deploy(make_config(data_uri, promotion={"smoke_max_latency_ms": 1e-6}), challenger_version="2")
    assert result.status == "refused" and result.champion_version == "1"
    assert result.reason.startswith("smoke test failed: latency: single-row p95 ")
    assert "> max 1e-06 ms" in result.reason
    assert [c["name"] for c in result.smoke["checks"] if not c["passed"]] == ["latency"]
    assert aliases(uri) == {"champion": "1", "challenger": "3"}
    assert [(op, alias) for op, alias, *_ in alias_writes] == [("set", "staging"), ("delete", "staging")]
    assert all(state.get("champion") == "1" for *_, state in alias_writes)
    record = Registry(uri).read_audit(MODEL)[-1]
    assert record.action == "refused" and record.evidence["smoke"]["passed"] is False


def test_config_mistakes_fail_before_anything_moves(store):
    uri, data_uri = store
    state = deploy(config=make_config(data_uri, promotion={"primary_metric": "rmse"}), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConfigError) and "promotion.primary_metric" in str(error)
    state = deploy(config=make_config(data_uri), challenger_version="9", return_state=True)
    assert isinstance(state.result(raise_on_failure=False), ModelNotFound)
    assert "champion" not in aliases(uri) and Registry(uri).read_audit(MODEL) == []


# -- rollback -------------------------------------------------------------------------------------


class _Lines(logging.Handler):
    """Every message a logger emits, formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_rollback_flow_restores_the_previous_champion(store, alias_writes):
    uri, data_uri = store
    config = make_config(data_uri)
    run_deploy(config, challenger_version="1")
    run_deploy(config, challenger_version="2")
    alias_writes.clear()

    # A reason as typed, line break and escape codes included: kept as given, logged escaped on one line.
    reason = "pager: error spike\n2026-01-01 rolled-back v9 -> v1 (forged)\x1b[2J"
    logged = _Lines()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(logged)
    try:
        state = rollback(config=config, reason=reason, return_state=True)
    finally:
        logger.removeHandler(logged)
    assert state.is_completed(), state.message
    result = state.result()
    assert (result.from_version, result.to_version) == ("2", "1")
    assert aliases(uri) == {"champion": "1", "rolled-back": "2", "challenger": "3"}
    assert all("champion" in s for *_, s in alias_writes)
    record = Registry(uri).read_audit(MODEL)[-1]
    assert (record.action, record.from_version, record.to_version, record.reason) == ("rolled-back", "2", "1", reason)
    [line] = [m for m in logged.messages if m.startswith("rolled back")]
    assert line.endswith("(pager: error spike\\n2026-01-01 rolled-back v9 -> v1 (forged)\\x1b[2J)")
    assert Registry(uri).get_version(MODEL, "2").tags["audit.last_action"] == "rolled-back"
    assert model_events("mlops.model.rolled-back", str(state.state_details.flow_run_id))

    # Nothing left to flip back to, and the rolled-back version cannot be redeployed as is.
    again = rollback(config=config, return_state=True)
    error = again.result(raise_on_failure=False)
    assert isinstance(error, ModelNotFound) and "no 'previous-champion'" in str(error)
    redeploy, _ = run_deploy(config, challenger_version="2")
    assert redeploy.status == "refused" and "rolled back from production" in redeploy.reason
    assert aliases(uri)["champion"] == "1"


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    body = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        payload = self.body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_service() -> Iterator[tuple[str, type[_MetricsHandler]]]:
    """A stand-in serving app whose /metrics shows v2 failing, growing with every scrape."""
    scrapes = {"n": 0}

    class Handler(_MetricsHandler):
        def do_GET(self) -> None:  # noqa: N802
            n = scrapes["n"] = scrapes["n"] + 1
            requests, errors = 50 * (n - 1), 10 * (n - 1)
            self.body = (
                "# TYPE mlops_requests_total counter\n"
                # The deployed model's v2 fails; another model's v2 on the same app is healthy.
                f'mlops_requests_total{{model="{MODEL}",model_version="2",route="champion"}} {requests}\n'
                f'mlops_requests_total{{model="other",model_version="2",route="champion"}} {requests * 100}\n'
                "# TYPE mlops_request_errors_total counter\n"
                f'mlops_request_errors_total{{model="{MODEL}",model_version="2",route="champion"}} {errors}\n'
                f'mlops_request_errors_total{{model="other",model_version="2",route="champion"}} 0\n'
            )
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    finally:
        server.shutdown()
        server.server_close()


def test_watch_breach_rolls_the_promotion_back(store, failing_service, monkeypatch):
    uri, data_uri = store
    url, _ = failing_service
    run_deploy(make_config(data_uri), challenger_version="1")
    monkeypatch.setenv("MLOPS_SERVING_URL", url)
    config = make_config(data_uri, rollback={"enabled": True, "poll_seconds": 0.2, "min_requests": 20})
    result, run_id = run_deploy(config, challenger_version="2", watch_seconds=5)
    assert result.status == "rolled-back" and result.champion_version == "1"
    assert result.watch["verdict"] == "breach" and "error rate 0.2000 > max 0.05" in result.watch["reason"]
    assert aliases(uri) == {"champion": "1", "rolled-back": "2", "challenger": "3"}
    actions = [(r.action, r.from_version, r.to_version) for r in Registry(uri).read_audit(MODEL)]
    assert actions == [("promoted", None, "1"), ("promoted", "1", "2"), ("rolled-back", "2", "1")]
    assert len(result.audit_records) == 2


def test_unreachable_service_gives_no_verdict_and_keeps_the_champion(store, monkeypatch):
    uri, data_uri = store
    monkeypatch.setenv("MLOPS_SERVING_URL", f"http://127.0.0.1:{free_port()}")
    config = make_config(data_uri, rollback={"enabled": True})
    result, _ = run_deploy(config, challenger_version="1", watch_seconds=30)
    assert result.status == "promoted" and result.watch["verdict"] == "no-verdict"
    assert "unreachable" in result.watch["reason"]
    assert aliases(uri)["champion"] == "1"


# -- the regressor: the same decisions on a lower-is-better primary metric ------------------------

SPEND_MODEL = "spend-deploy"


def make_spend_config(data_uri: str, **sections) -> PipelineConfig:
    raw = {
        "dataset": {"uri": data_uri, "target": "monthly_spend", "timestamp": "event_time"},
        "model": {"name": SPEND_MODEL, "task": "regression",
                  "estimator": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 30}},
        "split": {"method": "time", "test_size": 0.25},
        "validation": {"min_rows": 100},
        "gates": {"max_metrics": {"rmse": 15.0}},
        "rollback": {"enabled": False},
    }
    promotion = {**LENIENT_PROMOTION, **sections.pop("promotion", {})}
    raw.update(sections, promotion=promotion)
    return parse_config(raw)


@pytest.fixture(scope="module")
def trained_spend(prefect_api, mlflow_template, tmp_path_factory) -> tuple[Path, str]:
    """v1 and v2 (identical HistGradientBoostingRegressor) and v3 (DummyRegressor: the mean), no aliases moved."""
    dummy = {"model": {"name": SPEND_MODEL, "task": "regression", "estimator": "sklearn.dummy.DummyRegressor"}, "gates": {}}
    return _train_versions(tmp_path_factory.mktemp("trained-spend-home"), mlflow_template,
                           simulate_spend(2000, seed=31), make_spend_config, dummy)


@pytest.fixture
def spend_store(trained_spend, tmp_path, monkeypatch) -> tuple[str, str]:
    return _private_store(trained_spend, tmp_path, monkeypatch)


def spend_aliases(uri: str) -> dict[str, str]:
    found = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(SPEND_MODEL).aliases
    return {alias: str(version) for alias, version in found.items()}


def test_regressor_first_champion_then_a_worse_one_refused_on_rmse(spend_store):
    uri, data_uri = spend_store
    config = make_spend_config(data_uri, gates={})  # the default primary metric of a regressor: rmse
    first, _ = run_deploy(config, challenger_version="1")
    assert (first.status, first.champion_version) == ("promoted", "1")
    assert first.reason.startswith("first champion (rmse ") and first.smoke["passed"]

    worse, _ = run_deploy(config, challenger_version="3")  # the mean of the training spend
    assert (worse.status, worse.champion_version) == ("refused", "1")
    challenger, champion = worse.metrics["challenger"]["rmse"], worse.metrics["champion"]["rmse"]
    assert challenger > 2 * champion  # lower is better: a larger error is the worse model
    assert f"challenger rmse {challenger:.4f} vs champion {champion:.4f} (lower is better): worse by" in worse.reason
    assert spend_aliases(uri)["champion"] == "1"


def test_regressor_with_a_smaller_error_replaces_the_champion(spend_store):
    uri, data_uri = spend_store
    config = make_spend_config(data_uri, gates={})
    run_deploy(config, challenger_version="3")  # the dummy is the first champion
    result, _ = run_deploy(config, challenger_version="1")
    assert (result.status, result.champion_version, result.previous_champion_version) == ("promoted", "1", "3")
    assert result.metrics["challenger"]["rmse"] < result.metrics["champion"]["rmse"]
    assert "(lower is better): better" in result.reason
    assert spend_aliases(uri)["champion"] == "1"


def test_regressor_bootstrap_refuses_a_tie_and_mcnemar_is_refused_before_anything_moves(spend_store):
    uri, data_uri = spend_store
    run_deploy(make_spend_config(data_uri), challenger_version="1")
    strict = make_spend_config(data_uri, promotion={"significance": "bootstrap", "bootstrap_samples": 200})
    result, _ = run_deploy(strict, challenger_version="2")
    assert result.status == "refused" and "bootstrap: one-sided p 1.0000 >= alpha 0.05" in result.reason
    assert result.paired_evidence["method"] == "bootstrap" and result.paired_evidence["p_value"] == 1.0

    state = deploy(config=make_spend_config(data_uri, promotion={"significance": "mcnemar"}),
                   challenger_version="2", return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConfigError)
    assert str(error) == ("promotion.significance: mcnemar compares per-row correctness, which only "
                          "classification has; use bootstrap for regression")
    assert spend_aliases(uri)["champion"] == "1"
    assert [r.action for r in Registry(uri).read_audit(SPEND_MODEL)] == ["promoted", "refused"]


# -- a person's approval (approval.required) ----------------------------------------------------------

MLOPS = str(Path(sys.executable).parent / "mlops")


def _deploy_in_background(config: PipelineConfig, **params) -> tuple[threading.Thread, dict]:
    """deploy in a thread (it pauses there), its final state in the dict once the thread ends."""
    out: dict = {}
    # The test's Prefect settings live in a context variable, which a new thread does not inherit.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=lambda: context.run(lambda: out.update(state=deploy(config=config, return_state=True, **params))))
    thread.start()
    return thread, out


def _waiting(thread: threading.Thread, out: dict) -> list[str]:
    """The paused deploys of MODEL; a deploy that ended without pausing fails the wait at once."""
    assert thread.is_alive() or not out, f"deploy ended without waiting: {out['state']}"
    return waiting_deploys(MODEL)


def _answer(verb: str, config_file: Path, prefect_api: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    return subprocess.run([MLOPS, verb, "--config", str(config_file), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def _write_config(config: PipelineConfig, tmp_path: Path) -> Path:
    path = tmp_path / "deploy.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return path


def test_a_promotion_waits_for_approval_and_the_reviewer_is_audited(store, tmp_path, prefect_api):
    uri, data_uri = store
    run_deploy(make_config(data_uri), challenger_version="1")
    config = make_config(data_uri, approval={"required": True, "timeout_minutes": 5})
    config_file = _write_config(config, tmp_path)
    # Nothing waits yet: a clear line and exit 2.
    early = _answer("approve", config_file, prefect_api)
    assert early.returncode == 2 and f"no deploy of {MODEL} is waiting for approval" in early.stderr

    thread, out = _deploy_in_background(config, challenger_version="2")
    (run_id,) = wait_for("the deploy to wait for approval", lambda: _waiting(thread, out), 120, every=0.5)
    assert aliases(uri)["champion"] == "1"  # nothing moves while it waits
    approved = _answer("approve", config_file, prefect_api, "--reviewer", "ann", "--reason", "read the evidence")
    assert approved.returncode == 0, approved.stderr
    assert run_id in approved.stdout
    # A reviewer who answered the same run a moment later (it was waiting when they looked) loses
    # the race: one line naming the decision that won, never Prefect's NotPausedError.
    with pytest.raises(NothingToApprove, match=f"^flow run {run_id} was already approved by ann: read the evidence$"):
        resume_with_answer(run_id, {"approve": False, "reviewer": "bob", "reason": "slice gap"})
    with pytest.raises(NothingToApprove, match=f"^flow run {run_id} was already approved by ann: read the evidence$"):
        answer_approval(MODEL, False, "bob", "slice gap", run_id)
    with pytest.raises(NothingToApprove, match=f"is waiting for approval \\(flow run {run_id} was already approved by ann"):
        answer_approval(MODEL, False, "bob", "slice gap")
    thread.join(120)
    result = out["state"].result()
    assert result.status == "promoted" and aliases(uri)["champion"] == "2"
    record = Registry(uri).read_audit(MODEL)[-1]
    assert record.action == "promoted" and "approved by ann: read the evidence" in record.reason
    assert record.evidence["approval"]["reviewer"] == "ann" and record.evidence["approval"]["approved"] is True


def test_a_rejected_promotion_leaves_the_champion_and_says_who_and_why(store, tmp_path, prefect_api):
    uri, data_uri = store
    run_deploy(make_config(data_uri), challenger_version="1")
    config = make_config(data_uri, approval={"required": True, "timeout_minutes": 5})
    config_file = _write_config(config, tmp_path)
    thread, out = _deploy_in_background(config, challenger_version="2")
    wait_for("the deploy to wait for approval", lambda: _waiting(thread, out), 120, every=0.5)
    no_reason = _answer("reject", config_file, prefect_api)
    assert no_reason.returncode == 2 and "reject needs --reason" in no_reason.stderr
    rejected = _answer("reject", config_file, prefect_api, "--reviewer", "bob", "--reason", "slice gap")
    assert rejected.returncode == 0, rejected.stderr
    thread.join(120)
    assert out["state"].is_completed()
    result = out["state"].result()
    assert result.status == "refused" and result.reason == "rejected by bob: slice gap"
    assert aliases(uri)["champion"] == "1" and "staging" not in aliases(uri)
    record = Registry(uri).read_audit(MODEL)[-1]
    assert (record.action, record.to_version, record.reason) == ("refused", "2", "rejected by bob: slice gap")
    assert record.evidence["approval"]["approved"] is False


def test_no_answer_within_the_timeout_refuses_and_the_run_completes(store):
    uri, data_uri = store
    config = make_config(data_uri, approval={"required": True, "timeout_minutes": 0.05})  # 3 s
    result, run_id = run_deploy(config, challenger_version="1")
    assert result.status == "refused" and result.reason.startswith("approval timed out: no approval within 0.05 min")
    assert "champion" not in aliases(uri)
    record = Registry(uri).read_audit(MODEL)[-1]
    assert record.action == "refused" and record.evidence["approval"]["timed_out"] is True
    assert waiting_deploys(MODEL) == []
