"""Result types and how each deploy outcome fills them: the artifact key, the evidence, the result."""

from __future__ import annotations

import json

import pytest

from mlops.config import GatesConfig, PromotionConfig
from mlops.promotion import PairedEvidence, decide_promotion
from mlops.promotion.outcome import Comparison, DeployCase, compared_metrics, holdout_info
from mlops.results import (
    STATUS_PROMOTED,
    STATUS_REFUSED,
    STATUS_UNCHANGED,
    artifact_key,
)


@pytest.mark.parametrize(
    ("kind", "model", "key"),
    [
        ("deploy", "churn-classifier", "deploy-churn-classifier"),
        ("train", "Churn_Classifier v2", "train-churn-classifier-v2"),
        ("retrain", "a..b//c", "retrain-a-b-c"),
    ],
)
def test_artifact_key_is_lower_case_letters_digits_and_dashes(kind, model, key):
    assert artifact_key(kind, model) == key


CASE = DeployCase("churn", "3", "2", "run-1")
TAGS = {"data_uri": "d.parquet", "config_hash": "abc", "validation": json.dumps({"evaluated": 4}), "other": "x"}


def _comparison(new: float = 0.85, old: float | None = 0.80, paired: PairedEvidence | None = None) -> Comparison:
    decision = decide_promotion(
        {"roc_auc": new}, None if old is None else {"roc_auc": old}, PromotionConfig(), GatesConfig(),
        task="classification",
    )
    return Comparison(
        CASE, decision, compared_metrics({"roc_auc": new}, None if old is None else {"roc_auc": old}),
        holdout_info("s3://user:secret@bucket/h.parquet", 100, "f" * 64), paired, TAGS, {"event": "manual"},
    )


def test_a_candidate_that_already_is_champion_is_unchanged():
    assert not CASE.unchanged and DeployCase("churn", "2", None).unchanged is False
    result = DeployCase("churn", "2", "2", "run-1").unchanged_result()
    assert (result.status, result.champion_version, result.reason) == (STATUS_UNCHANGED, "2", "v2 already is champion")
    assert (result.previous_champion_version, result.flow_run_id, result.audit_records) == ("2", "run-1", [])


def test_a_blocked_candidate_is_refused_with_its_one_failed_check():
    result = CASE.blocked_result("v3 was rolled back", "audit/x.json")
    assert (result.status, result.champion_version, result.audit_records) == (STATUS_REFUSED, "2", ["audit/x.json"])
    assert result.decision == {
        "promote": False, "reason": "v3 was rolled back",
        "checks": [{"name": "not-rolled-back", "passed": False, "detail": "v3 was rolled back"}],
    }
    assert result.metrics == {} and result.holdout == {}


def test_the_holdout_is_named_without_credentials():
    assert holdout_info("s3://user:secret@bucket/h.parquet", 7, "fp") == {
        "uri": "s3://bucket/h.parquet", "rows": 7, "fingerprint": "fp",
    }


def test_a_first_champion_has_no_champion_metrics():
    assert compared_metrics({"roc_auc": 0.8}, None) == {"challenger": {"roc_auc": 0.8}}
    assert list(compared_metrics({"a": 1.0}, {"a": 0.5})) == ["challenger", "champion"]


def test_evidence_holds_both_models_the_holdout_lineage_and_the_smoke_test():
    paired = PairedEvidence("bootstrap", 0.01, 0.05, 100)
    evidence = _comparison(paired=paired).evidence({"passed": True, "checks": []})
    assert evidence["primary_metric"] == "roc_auc"
    assert evidence["metrics"] == {"challenger": {"roc_auc": 0.85}, "champion": {"roc_auc": 0.80}}
    assert evidence["holdout"]["uri"] == "s3://bucket/h.parquet"
    assert evidence["lineage"] == {"data_uri": "d.parquet", "config_hash": "abc"}
    assert evidence["validation"] == {"evaluated": 4}
    assert evidence["paired_test"]["p_value"] == 0.01
    assert evidence["smoke"] == {"passed": True, "checks": []} and evidence["trigger"] == {"event": "manual"}
    assert _comparison().evidence()["smoke"] is None and _comparison().evidence()["paired_test"] is None


def test_a_result_carries_the_decision_and_leaves_unwritten_records_out():
    comparison = _comparison(paired=PairedEvidence("mcnemar", 0.2, 0.01, 100))
    result = comparison.result(STATUS_PROMOTED, "3", "better", smoke={"passed": True},
                               watch={"verdict": "ok"}, audit_records=["audit/a.json", None])
    assert (result.status, result.model_name, result.candidate_version) == (STATUS_PROMOTED, "churn", "3")
    assert (result.champion_version, result.previous_champion_version, result.flow_run_id) == ("3", "2", "run-1")
    assert result.audit_records == ["audit/a.json"]
    assert result.decision == comparison.decision.to_dict() and result.decision["promote"] is True
    assert result.paired_evidence == {"method": "mcnemar", "p_value": 0.2, "observed_improvement": 0.01,
                                      "rows": 100, "details": {}}
    assert (result.smoke, result.watch, result.holdout["rows"]) == ({"passed": True}, {"verdict": "ok"}, 100)
    assert json.loads(json.dumps(result.to_dict()))["status"] == STATUS_PROMOTED  # what `mlops deploy --json` prints
