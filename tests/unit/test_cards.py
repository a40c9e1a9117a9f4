"""Model cards: every section computed from a small trained model, both renderings, the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops import audit
from mlops.cards import (
    SECTIONS,
    ModelCard,
    build_card,
    calibration_summary,
    card_summary,
    render_html,
    render_markdown,
)
from mlops.config import parse_config
from mlops.contract import infer_contract
from mlops.evaluation import compute_slices, evaluate_model, split_frame
from mlops.local.simulate import simulate_churn, simulate_spend
from mlops.metrics import Predictions, predict
from mlops.training import feature_frame, fit_pipeline

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

BEHAVIOUR = {
    "passed": False,
    "tests": [
        {"name": "charges-up-churn-up", "kind": "directional", "passed": False, "detail": "3 of 50 rows moved down",
         "failing_cases": [{"monthly_charges": 20.0, "contract": "one-year"}]},
        {"name": "region-invariance", "kind": "invariance", "passed": True, "detail": "0 of 50 rows changed",
         "failing_cases": []},
    ],
}


def _card(frame: pd.DataFrame, raw: dict, *, behaviour=None, records=()) -> ModelCard:
    config = parse_config(raw)
    contract = infer_contract(frame, config.dataset.target, config.dataset.timestamp, config.model.task)
    train, holdout = split_frame(frame, contract, config.split, 0)
    pipeline = fit_pipeline(train, contract, config.model)
    result = evaluate_model(pipeline, holdout, contract, 0, importance_rows=200)
    predictions = predict(pipeline, feature_frame(holdout, contract), contract.task)
    slices = compute_slices(holdout, holdout[contract.target].to_numpy(), predictions, contract.task,
                            config.evaluation, [config.promotion.primary_metric], 0)
    return build_card(
        config=config, version="3", run_id="run-1", pipeline=pipeline, train=train, holdout=holdout,
        contract=contract, evaluation=result, slices=slices, fingerprint="abc123",
        tags={"git_commit": "deadbeef", "config_hash": "c0ffee", "metrics": "{}", "audit.last_action": "promoted"},
        behaviour=behaviour, audit=records,
    )


def _raw(target: str, task: str, **sections) -> dict:
    return {
        "dataset": {"uri": "data/x.parquet", "target": target, "timestamp": "event_time"},
        "model": {"name": "m", "task": task, "params": {"max_iter": 15},
                  "estimator": f"sklearn.ensemble.HistGradientBoosting{'Classifier' if task == 'classification' else 'Regressor'}"},
        "split": {"method": "time"},
        "evaluation": {"segments": ["contract"], "min_slice_rows": 60, "bootstrap_samples": 50},
        **sections,
    }


@pytest.fixture(scope="module")
def churn_card() -> ModelCard:
    raw = _raw("churned", "classification", card={"purpose": "Flag customers about to leave", "owner": "retention team",
                                                  "limitations": ["Synthetic customers only"]})
    record = audit.new_record("refused", "m", from_version="2", to_version="3", decision={}, reason="worse on contract=two-year",
                              evidence={}, flow_run_id=None, actor="tester")
    other = audit.new_record("promoted", "m", from_version="1", to_version="2", decision={}, reason="better",
                             evidence={}, flow_run_id=None, actor="tester")
    return _card(simulate_churn(600, seed=5), raw, behaviour=BEHAVIOUR, records=[record, other])


def test_a_classifier_card_fills_every_section(churn_card):
    card = churn_card
    assert card.about == {"purpose": "Flag customers about to leave", "owner": "retention team",
                          "intended_use": "not stated"}
    assert card.data["rows"]["total"] == 600 and card.data["fingerprint"] == "abc123"
    assert card.data["time_range"]["column"] == "event_time"
    assert set(card.data["target_distribution"]["shares"]) == {"0", "1"}
    roc = card.metrics["roc_auc"]
    assert roc["low"] <= roc["value"] <= roc["high"]
    assert {s["value"] for s in card.slices["slices"]} == {"month-to-month", "one-year", "two-year"}
    assert 0 <= card.calibration["ece"] <= 1 and 0 <= card.calibration["brier"] <= 1
    assert card.residuals is None
    assert card.explanations["importance"][0]["std"] is not None
    assert card.explanations["partial_dependence"], "no partial dependence computed"
    assert "reliability.png" in card.plots and any(name.startswith("pdp_") for name in card.plots)
    assert card.limitations[0] == "Synthetic customers only"
    # Lineage leaves out the metric and audit mirrors; the audit trail keeps only this version's records.
    assert card.lineage == {"config_hash": "c0ffee", "git_commit": "deadbeef"}
    assert [r["action"] for r in card.audit] == ["refused"]


def test_markdown_and_html_carry_every_section(churn_card):
    markdown, page = render_markdown(churn_card), render_html(churn_card)
    for title in SECTIONS:
        assert f"## {title}" in markdown
        assert f"<h2>{title}</h2>" in page
    assert "charges-up-churn-up" in markdown and "FAILED" in markdown
    assert "worse on contract=two-year" in markdown
    assert 'src="data:image/png;base64,' in page and "<script" not in page
    assert "Flag customers about to leave" in page


def test_a_card_without_segments_or_behavioural_tests_says_so():
    raw = _raw("churned", "classification")
    raw["evaluation"] = {"segments": []}
    card = _card(simulate_churn(300, seed=6), raw)
    markdown = render_markdown(card)
    assert "No segments declared" in markdown
    assert "## Behavioural tests\n\nNone declared." in markdown
    assert "none declared" in card_summary(card)


def test_a_regressor_card_has_residuals_not_calibration():
    card = _card(simulate_spend(600, seed=7), _raw("monthly_spend", "regression"))
    assert card.calibration is None and card.residuals is not None
    assert card.data["target_distribution"]["kind"] == "numeric"
    assert "rmse" in card.metrics and "residuals.png" in card.plots
    assert "Not applicable to a regressor" in render_markdown(card)


def test_card_round_trips_through_json(churn_card):
    import json

    assert ModelCard.from_dict(json.loads(churn_card.to_json())) == ModelCard.from_dict(churn_card.to_dict())


def test_summary_names_primary_metric_worst_slice_and_failed_tests(churn_card):
    summary = card_summary(churn_card)
    assert summary.startswith("**m v3**")
    assert "roc_auc" in summary and "worst slice: contract=" in summary
    assert "behavioural tests: 1/2 passed (failed: charges-up-churn-up)" in summary


def test_calibration_of_a_perfectly_calibrated_binary_model():
    # Scores of 0.25 and 0.75 whose outcomes happen exactly at those rates: ECE 0.
    truth = np.array([1, 0, 0, 0] + [1, 1, 1, 0])
    score = np.array([0.25] * 4 + [0.75] * 4)
    summary = calibration_summary(truth, Predictions(pred=(score > 0.5).astype(int), score=score, classes=(0, 1)))
    assert summary["ece"] == 0.0
    assert summary["brier"] == pytest.approx(0.1875)
    assert [b["count"] for b in summary["bins"] if b["count"]] == [4, 4]


def test_calibration_of_an_overconfident_model_and_of_no_probabilities():
    truth = np.array([1, 0] * 5)
    score = np.full(10, 0.95)
    summary = calibration_summary(truth, Predictions(pred=np.ones(10, int), score=score, classes=(0, 1)))
    assert summary["ece"] == pytest.approx(0.45)
    assert calibration_summary(truth, Predictions(pred=np.ones(10, int), score=None, classes=(0, 1))) is None
    decision_scores = np.linspace(-3, 3, 10)
    assert calibration_summary(truth, Predictions(pred=np.ones(10, int), score=decision_scores, classes=(0, 1))) is None


class _Registry:
    """The registry calls `current_card` makes, answered from memory."""

    def __init__(self, versions: dict[str, dict | None], champion: str | None = None, records=()) -> None:
        from mlops.registry import ModelRef

        self.refs = [ModelRef("m", v, f"run-{v}", "src", tags={"git_commit": f"sha{v}"}) for v in versions]
        self.stored = {f"run-{v}": card for v, card in versions.items()}
        self.champion, self.records = champion, list(records)

    def list_versions(self, name):
        return self.refs

    def version_by_alias(self, name, alias):
        return next((r for r in self.refs if r.version == self.champion), None)

    def read_run_json(self, run_id, path):
        return self.stored[run_id] if path.startswith("card/") else None

    def read_audit(self, name):
        return self.records


def test_current_card_picks_the_champion_and_refreshes_lineage_and_audit(churn_card):
    from mlops.cards.store import current_card

    stored = {v: {**churn_card.to_dict(), "version": v} for v in ("1", "2", "3")}
    record = audit.new_record("promoted", "m", from_version=None, to_version="2", decision={}, reason="first",
                              evidence={}, flow_run_id=None, actor="tester")
    card = current_card(_Registry(stored, champion="2", records=[record]), "m")
    assert (card.version, card.lineage) == ("2", {"git_commit": "sha2"})
    assert [r["reason"] for r in card.audit] == ["first"]
    assert card.behaviour is None  # the run has no behavioural report
    # Without a champion, the newest version; the record does not name it.
    newest = current_card(_Registry(stored, records=[record]), "m")
    assert (newest.version, newest.audit) == ("3", [])


@pytest.mark.parametrize(
    ("versions", "asked", "message"),
    [
        ({}, None, "model m has no registered versions"),
        ({"1": {}}, "4", "model m has no version 4 (versions: 1)"),
        ({"1": None}, None, "model m v1 has no model card (trained before cards were built)"),
    ],
)
def test_current_card_refuses_what_is_not_there(versions, asked, message):
    from mlops.cards.store import current_card
    from mlops.errors import ModelNotFound

    with pytest.raises(ModelNotFound) as raised:
        current_card(_Registry(versions), "m", asked)
    assert str(raised.value) == message and raised.value.exit_code == 2


def test_an_audit_reason_with_line_breaks_and_escape_codes_is_one_row_of_the_card(churn_card):
    from dataclasses import replace

    hostile = audit.new_record("refused", "m", from_version="2", to_version="3", decision={},
                               reason="no\r\n| 2026 | promoted | v1 | v9 | root | forged |\x1b[2J", evidence={},
                               flow_run_id=None, actor="eve\n")
    card = replace(churn_card, audit=[{"recorded_at": hostile.recorded_at, "action": hostile.action,
                                       "from_version": "2", "to_version": "3", "actor": hostile.actor,
                                       "reason": hostile.reason}])
    text = render_markdown(card)
    section = text[text.index("| time (UTC) |"):].split("\n\n")[0].splitlines()
    assert len(section) == 3  # header, rule, the one record
    assert "\x1b" not in text and "\r" not in text and "no\\r\\n\\| 2026" in section[2]
