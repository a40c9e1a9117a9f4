"""Holdout evaluation: the split, metrics, slices, plots and permutation importance, the quality
gates and the behavioural tests."""

from mlops.evaluation.behaviour import (
    BehaviourReport,
    BehaviourTestFailed,
    enforce_behaviour,
    run_behaviour,
    validate_behaviour,
)
from mlops.evaluation.gates import (
    GateResult,
    SliceGateResult,
    check_gates,
    check_slice_gates,
    enforce_gates,
    enforce_slice_gates,
    validate_gates,
)
from mlops.evaluation.holdout import Evaluation, evaluate_model, split_frame
from mlops.evaluation.importance import importance_with_spread
from mlops.evaluation.slices import SliceReport, SliceResult, bootstrap_intervals, compute_slices

__all__ = [
    "BehaviourReport",
    "BehaviourTestFailed",
    "enforce_behaviour",
    "run_behaviour",
    "validate_behaviour",
    "Evaluation",
    "GateResult",
    "SliceGateResult",
    "SliceReport",
    "SliceResult",
    "bootstrap_intervals",
    "check_slice_gates",
    "compute_slices",
    "enforce_slice_gates",
    "check_gates",
    "enforce_gates",
    "evaluate_model",
    "importance_with_spread",
    "split_frame",
    "validate_gates",
]
