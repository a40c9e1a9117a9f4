"""Champion vs challenger: the shared holdout, paired significance, the decision, the smoke test and
the post-deployment watch. All pure: flows supply data, models and clocks, and act on the verdicts.

Exports are resolved when first used: the registry reads a rollout's traffic split from here, and
every read-only command paid for scikit-learn through the smoke test (1.4 s) before it did.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "smoke": None,
    "watch": None,
    "PromotionCheck": "decision",
    "PromotionDecision": "decision",
    "candidate_blocker": "decision",
    "decide_promotion": "decision",
    "validate_policy": "decision",
    "holdout_metrics": "holdout",
    "predict_holdout": "holdout",
    "promotion_holdout": "holdout",
    "score_on_holdout": "holdout",
    "PairedEvidence": "significance",
    "mcnemar_test": "significance",
    "paired_bootstrap": "significance",
    "paired_evidence": "significance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlops.promotion' has no attribute '{name}'")
    module = _EXPORTS[name]
    if module is None:
        return importlib.import_module(f"mlops.promotion.{name}")
    return getattr(importlib.import_module(f"mlops.promotion.{module}"), name)
