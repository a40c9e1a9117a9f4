"""Holdout evaluation: the split, metrics, plots and permutation importance, the quality gate and
the behavioural tests."""

from mlops.evaluation.behaviour import (
    BehaviourReport,
    BehaviourTestFailed,
    enforce_behaviour,
    run_behaviour,
    validate_behaviour,
)
from mlops.evaluation.gates import GateResult, check_gates, enforce_gates, validate_gates
from mlops.evaluation.holdout import Evaluation, evaluate_model, split_frame
from mlops.evaluation.importance import feature_importance

__all__ = [
    "BehaviourReport",
    "BehaviourTestFailed",
    "enforce_behaviour",
    "run_behaviour",
    "validate_behaviour",
    "Evaluation",
    "GateResult",
    "check_gates",
    "enforce_gates",
    "evaluate_model",
    "feature_importance",
    "split_frame",
    "validate_gates",
]
