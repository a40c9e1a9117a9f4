"""What a deploy says about itself: the evidence of its audit records and the result it returns.

The deploy flow decides and acts (scores, stages, moves aliases); these pure builders give every
outcome (unchanged, blocked, refused, promoted, rolled back) the same shape, so the audit trail, the
CLI's JSON and the Prefect artifact cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlops import audit, lineage
from mlops.promotion.decision import PromotionDecision
from mlops.promotion.significance import PairedEvidence
from mlops.results import STATUS_REFUSED, STATUS_UNCHANGED, DeployResult

# The one check a candidate fails when it was rolled back before (see `candidate_blocker`).
NOT_ROLLED_BACK = "not-rolled-back"


def holdout_info(data_uri: str, rows: int, fingerprint: str) -> dict[str, Any]:
    """Which rows both models were scored on, with no credentials in the URI."""
    return {"uri": lineage.redact_uri(data_uri), "rows": rows, "fingerprint": fingerprint}


def compared_metrics(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None
) -> dict[str, Mapping[str, float]]:
    """Both models' holdout metrics by role; no `champion` entry for a first champion."""
    return {"challenger": challenger, **({"champion": champion} if champion is not None else {})}


@dataclass(frozen=True)
class DeployCase:
    """The candidate and the champion a deploy starts from: the part every outcome shares."""

    model_name: str
    candidate_version: str
    champion_version: str | None
    flow_run_id: str | None = None

    def base(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name, "candidate_version": self.candidate_version,
            "previous_champion_version": self.champion_version, "flow_run_id": self.flow_run_id,
        }

    @property
    def unchanged(self) -> bool:
        return self.champion_version is not None and self.champion_version == self.candidate_version

    def unchanged_result(self) -> DeployResult:
        return DeployResult(
            status=STATUS_UNCHANGED, champion_version=self.champion_version,
            reason=f"v{self.candidate_version} already is champion", **self.base(),
        )

    def blocked_decision(self, blocker: str) -> dict[str, Any]:
        """The decision recorded for a candidate refused before any scoring."""
        return {"promote": False, "reason": blocker, "checks": [{"name": NOT_ROLLED_BACK, "passed": False, "detail": blocker}]}

    def blocked_result(self, blocker: str, audit_record: str) -> DeployResult:
        return DeployResult(
            status=STATUS_REFUSED, champion_version=self.champion_version, reason=blocker,
            decision=self.blocked_decision(blocker), audit_records=[audit_record], **self.base(),
        )


@dataclass(frozen=True)
class Comparison:
    """A scored comparison of challenger and champion, and the decision taken on it."""

    case: DeployCase
    decision: PromotionDecision
    metrics: dict[str, Mapping[str, float]]
    holdout: dict[str, Any]
    paired: PairedEvidence | None = None
    version_tags: Mapping[str, str] = field(default_factory=dict)
    trigger: Mapping[str, Any] | None = None
    approval: Mapping[str, Any] | None = None  # a person's verdict, when the policy asked for one
    rollout: Mapping[str, Any] | None = None  # the live rollout's steps, when one ran
    card: Mapping[str, Any] | None = None  # where the challenger's model card is (mlops.cards.card_link)

    def with_approval(self, approval: Mapping[str, Any]) -> Comparison:
        return replace(self, approval=approval)

    def with_rollout(self, rollout: Mapping[str, Any]) -> Comparison:
        return replace(self, rollout=rollout)

    def evidence(self, smoke: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The evidence of an audit record about this comparison (after the smoke test, if one ran)."""
        return audit.build_evidence(
            primary_metric=self.decision.primary_metric, metrics=self.metrics, holdout=self.holdout,
            version_tags=self.version_tags, paired=self.paired.to_dict() if self.paired else None,
            trigger=self.trigger, smoke=smoke, approval=self.approval, rollout=self.rollout, card=self.card,
        )

    def result(
        self, status: str, champion_version: str | None, reason: str, *, smoke: dict[str, Any] | None = None,
        watch: dict[str, Any] | None = None, audit_records: Iterable[str | None] = (),
    ) -> DeployResult:
        """The deploy's result; audit records that were not written (None) are left out."""
        return DeployResult(
            status=status, champion_version=champion_version, reason=reason, smoke=smoke, watch=watch,
            audit_records=[path for path in audit_records if path], decision=self.decision.to_dict(),
            metrics=dict(self.metrics), holdout=self.holdout,
            paired_evidence=self.paired.to_dict() if self.paired else None, **self.case.base(),
        )
