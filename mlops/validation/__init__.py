"""Data validation: the pure plan (contract + rules -> expectations), the Great Expectations adapter
that runs it, and the report in our own terms."""

from mlops.validation.ge_adapter import validate_frame
from mlops.validation.plan import TYPE_LISTS, PlannedExpectation, plan_expectations
from mlops.validation.report import ExpectationOutcome, ValidationReport

__all__ = [
    "TYPE_LISTS",
    "ExpectationOutcome",
    "PlannedExpectation",
    "ValidationReport",
    "plan_expectations",
    "validate_frame",
]
