"""Holdout evaluation: the split, metrics, plots and permutation importance, and the quality gate."""

from mlops.evaluation.gates import GateResult, check_gates, enforce_gates, validate_gates
from mlops.evaluation.holdout import Evaluation, evaluate_model, split_frame
from mlops.evaluation.importance import feature_importance

__all__ = [
    "Evaluation",
    "GateResult",
    "check_gates",
    "enforce_gates",
    "evaluate_model",
    "feature_importance",
    "split_frame",
    "validate_gates",
]
