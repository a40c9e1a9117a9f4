"""The pure plan: which expectations a frame is held to, from its data contract and the configured rules.

Nothing here imports Great Expectations: an expectation is named by its GE type (snake case) with
the arguments GE gets, so the plan is checked in unit tests without GE and handed to the adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops.config import ColumnRule, ValidationConfig
from mlops.contract import MAX_ABS_VALUE, ColumnContract, DataContract, Kind, column_kind
from mlops.validation.report import Source

# Long category sets are cut in reports so an artifact or a tag stays readable.
MAX_VALUE_SET = 20
# A feature column must have at least one value; one that is entirely null teaches nothing.
_SOME_VALUES = 1e-9

_NUMPY_NUMERIC = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
# GE resolves a pandas nullable dtype only by its class name ("Int64Dtype"), not by "Int64".
_NULLABLE_NUMERIC = (
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "UInt8Dtype",
    "UInt16Dtype",
    "UInt32Dtype",
    "UInt64Dtype",
    "Float32Dtype",
    "Float64Dtype",
)
# Object columns are checked value by value, so a categorical column must hold Python strings.
TYPE_LISTS: dict[Kind, tuple[str, ...]] = {
    "numeric": _NUMPY_NUMERIC + _NULLABLE_NUMERIC,
    "boolean": ("bool", "BooleanDtype"),
    "datetime": ("datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"),
    "categorical": ("str",),
}
# Pandas extension dtypes GE's type check can name (the rest are handed over as plain dtypes).
NAMEABLE_EXTENSION = {*_NULLABLE_NUMERIC, "BooleanDtype"}


@dataclass(frozen=True)
class PlannedExpectation:
    """One expectation to hand to GE, with what our report says about it."""

    source: Source
    column: str | None  # GE gets it as `column=` when set
    expectation: str  # the GE expectation type, e.g. "expect_column_values_to_be_in_set"
    arguments: dict[str, Any] = field(hash=False)  # what GE gets besides the column
    kwargs: dict[str, Any] = field(hash=False)  # what our report shows (long sets cut)
    kind: Kind | None = None  # for type checks: the contract kind that was expected


def plan_expectations(
    frame: pd.DataFrame, contract: DataContract, config: ValidationConfig, *, require_target: bool
) -> list[PlannedExpectation]:
    """The suite from the contract and the rules, skipping checks GE could only crash on."""
    tol = config.contract
    present = set(frame.columns)
    target_absent_ok = not require_target and contract.target not in present
    expected_columns = [
        c.name for c in contract.columns if not (target_absent_ok and c.name == contract.target)
    ]
    plan = [
        _planned(
            "schema",
            None,
            "expect_table_columns_to_match_set",
            {"column_set": expected_columns, "exact_match": True},
            {"column_set": _truncated(expected_columns), "exact_match": True},
        ),
        _planned(
            "schema",
            None,
            "expect_table_row_count_to_be_between",
            {"min_value": config.min_rows},
        ),
    ]
    for col in contract.columns:
        if col.name in present:
            plan.extend(
                _contract_checks(frame[col.name], col, contract, tol, require_target=require_target)
            )
    for rule in config.rules:
        if rule.column == contract.target and target_absent_ok:
            continue
        plan.extend(_rule_checks(rule, present))
    return plan


def _planned(
    source: Source,
    column: str | None,
    expectation: str,
    arguments: dict[str, Any],
    kwargs: dict[str, Any] | None = None,
    kind: Kind | None = None,
) -> PlannedExpectation:
    """An expectation whose report shows GE's arguments unless told otherwise."""
    return PlannedExpectation(
        source, column, expectation, arguments, dict(arguments) if kwargs is None else kwargs, kind
    )


def _contract_checks(
    series: pd.Series,
    col: ColumnContract,
    contract: DataContract,
    tol: Any,
    *,
    require_target: bool,
) -> list[PlannedExpectation]:
    name = col.name
    type_list = list(TYPE_LISTS[col.kind])
    checks = [
        _planned(
            "contract", name, "expect_column_values_to_be_in_type_list", {"type_list": type_list}, kind=col.kind
        ),
    ]
    is_target = name == contract.target
    if is_target and require_target:
        checks.append(_not_null("contract", name, 1.0))
    elif not is_target:
        mostly = round(1.0 - (col.null_fraction + tol.null_rate_margin), 6)
        checks.append(_not_null("contract", name, mostly if mostly > 0 else _SOME_VALUES))
    # A range check on strings (or a set check on numbers) makes GE raise; the type check reports it.
    if column_kind(series) != col.kind:
        return checks
    if is_target and contract.task == "classification":
        if contract.classes is not None:
            checks.append(_in_set("contract", name, list(contract.classes), 1.0))
        if require_target:
            checks.append(
                _planned("contract", name, "expect_column_unique_value_count_to_be_between", {"min_value": 2})
            )
    elif col.role == "feature" and col.kind == "numeric":
        # Every value, not `mostly`: one infinity is enough to make the fit fail.
        checks.append(_between("contract", name, -MAX_ABS_VALUE, MAX_ABS_VALUE, 1.0))
        if col.min is not None and col.max is not None:
            margin = tol.range_margin * (col.max - col.min)
            checks.append(_between("contract", name, col.min - margin, col.max + margin, tol.mostly))
    elif col.role == "feature" and col.kind == "categorical" and col.categories is not None:
        checks.append(_in_set("contract", name, list(col.categories), tol.mostly))
    return checks


def _rule_checks(rule: ColumnRule, present: set[str]) -> list[PlannedExpectation]:
    name = rule.column
    if name not in present:
        # ExpectColumnToExist fails cleanly where a column check would make GE raise.
        return [_planned("schema", name, "expect_column_to_exist", {})]
    checks = []
    if rule.min is not None or rule.max is not None:
        checks.append(_between("rule", name, rule.min, rule.max, 1.0))
    if rule.allowed is not None:
        checks.append(_in_set("rule", name, list(rule.allowed), 1.0))
    if rule.max_null_fraction is not None and 1.0 - rule.max_null_fraction > 0:
        checks.append(_not_null("rule", name, round(1.0 - rule.max_null_fraction, 6)))
    if rule.unique:
        checks.append(_planned("rule", name, "expect_column_values_to_be_unique", {}))
    return checks


def _not_null(source: Source, name: str, mostly: float) -> PlannedExpectation:
    return _planned(source, name, "expect_column_values_to_not_be_null", {"mostly": mostly})


def _in_set(source: Source, name: str, values: list[Any], mostly: float) -> PlannedExpectation:
    return _planned(
        source,
        name,
        "expect_column_values_to_be_in_set",
        {"value_set": values, "mostly": mostly},
        {"value_set": _truncated(values), "value_set_size": len(values), "mostly": mostly},
    )


def _between(source: Source, name: str, lo: float | None, hi: float | None, mostly: float) -> PlannedExpectation:
    return _planned(
        source, name, "expect_column_values_to_be_between", {"min_value": lo, "max_value": hi, "mostly": mostly}
    )


def _truncated(values: Iterable[Any]) -> list[Any]:
    return list(values)[:MAX_VALUE_SET]
