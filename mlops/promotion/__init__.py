"""Champion vs challenger: the shared holdout, paired significance, the decision, the smoke test and
the post-deployment watch. All pure: flows supply data, models and clocks, and act on the verdicts."""

from mlops.promotion import smoke, watch
from mlops.promotion.decision import (
    PromotionCheck,
    PromotionDecision,
    candidate_blocker,
    decide_promotion,
    validate_policy,
)
from mlops.promotion.holdout import (
    holdout_metrics,
    predict_holdout,
    promotion_holdout,
    score_on_holdout,
)
from mlops.promotion.significance import (
    PairedEvidence,
    mcnemar_test,
    paired_bootstrap,
    paired_evidence,
)

__all__ = [
    "PairedEvidence",
    "PromotionCheck",
    "PromotionDecision",
    "candidate_blocker",
    "decide_promotion",
    "holdout_metrics",
    "mcnemar_test",
    "paired_bootstrap",
    "paired_evidence",
    "predict_holdout",
    "promotion_holdout",
    "score_on_holdout",
    "smoke",
    "validate_policy",
    "watch",
]
