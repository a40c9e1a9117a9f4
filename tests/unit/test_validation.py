"""Unit tests for mlops.validation: the suite built from contract and rules, and the report forms."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.config import ColumnRule, ContractTolerance, ValidationConfig
from mlops.contract import DataContract, infer_contract
from mlops.local.simulate import simulate_churn
from mlops.validation import (
    TYPE_LISTS,
    ExpectationOutcome,
    ValidationReport,
    plan_expectations,
    validate_frame,
)
from mlops.validation.plan import MAX_VALUE_SET

URI = "memory://batch"


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return simulate_churn(500, seed=11)


@pytest.fixture(scope="module")
def contract(reference: pd.DataFrame) -> DataContract:
    return infer_contract(reference, "churned", "event_time", "classification")


@pytest.fixture
def frame() -> pd.DataFrame:
    """A fresh batch from the same population, safe to mutate per test."""
    return simulate_churn(500, seed=12)


def _validate(
    frame: pd.DataFrame,
    contract: DataContract,
    config: ValidationConfig | None = None,
    **kwargs: bool,
) -> ValidationReport:
    return validate_frame(frame, contract, config or ValidationConfig(), URI, **kwargs)


def _failed(
    report: ValidationReport, expectation: str, column: str | None = None
) -> ExpectationOutcome:
    """The failed outcome of this type on this column; fails the test if there is none."""
    matches = [o for o in report.failed if o.expectation == expectation and o.column == column]
    assert matches, (
        f"no failed {expectation} on {column!r}; failed: {[o.describe() for o in report.failed]}"
    )
    return matches[0]


def _only_failure(
    report: ValidationReport, expectation: str, column: str | None = None
) -> ExpectationOutcome:
    assert not report.success
    assert len(report.failed) == 1, [o.describe() for o in report.failed]
    return _failed(report, expectation, column)


def test_clean_data_passes(frame: pd.DataFrame, contract: DataContract) -> None:
    report = _validate(frame, contract)
    assert report.success, report.summary()
    assert report.failed == ()
    assert report.row_count == 500
    assert {o.source for o in report.outcomes} == {"schema", "contract"}
    # Every contract column gets a type and a null check, and the target its class checks.
    checked = {(o.expectation, o.column) for o in report.outcomes}
    for col in contract.columns:
        assert ("expect_column_values_to_be_in_type_list", col.name) in checked
    assert ("expect_column_unique_value_count_to_be_between", "churned") in checked
    assert (
        report.summary()
        == f"data validation passed for {URI}: {len(report.outcomes)} expectations on 500 rows"
    )


def test_missing_column_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    report = _validate(frame.drop(columns=["plan"]), contract)
    outcome = _only_failure(report, "expect_table_columns_to_match_set")
    assert outcome.source == "schema"
    assert outcome.observed == "missing: plan"
    assert not any(o.column == "plan" for o in report.outcomes)


def test_extra_column_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    report = _validate(frame.assign(foo=1), contract)
    assert _only_failure(report, "expect_table_columns_to_match_set").observed == "extra: foo"


def test_missing_and_extra_columns_are_named_together(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    report = _validate(frame.drop(columns=["plan"]).assign(foo=1), contract)
    assert (
        _failed(report, "expect_table_columns_to_match_set").observed == "missing: plan; extra: foo"
    )


def test_duplicate_column_names_fail(frame: pd.DataFrame, contract: DataContract) -> None:
    doubled = pd.concat([frame, frame[["age"]]], axis=1)
    report = _validate(doubled, contract)
    assert "duplicate columns: age" in _failed(report, "expect_table_columns_to_match_set").observed


def test_numbers_as_strings_fail_the_type_check_only(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    report = _validate(frame.assign(age=frame["age"].astype(str)), contract)
    outcome = _only_failure(report, "expect_column_values_to_be_in_type_list", "age")
    assert "dtype object, expected numeric" in outcome.observed
    # A range check on strings would make GE raise; it must be skipped, not reported as an error.
    assert not any(
        o.column == "age" and o.expectation == "expect_column_values_to_be_between"
        for o in report.outcomes
    )
    assert not any(o.observed.startswith("error:") for o in report.outcomes)


@pytest.mark.parametrize(
    ("column", "empty"), [("monthly_charges", np.nan), ("plan", None), ("age", None)]
)
def test_all_null_column_fails(
    frame: pd.DataFrame, contract: DataContract, column: str, empty: object
) -> None:
    report = _validate(frame.assign(**{column: empty}), contract)
    outcome = _failed(report, "expect_column_values_to_not_be_null", column)
    assert outcome.observed.startswith("500 null values (100.00%)")


def test_out_of_range_values_fail(frame: pd.DataFrame, contract: DataContract) -> None:
    frame.loc[frame.index[:25], "age"] = 150
    report = _validate(frame, contract)
    outcome = _only_failure(report, "expect_column_values_to_be_between", "age")
    assert outcome.source == "contract"
    assert outcome.observed.startswith("25 unexpected values (5.00%), e.g. [150]")
    age = contract.column("age")
    margin = 0.25 * (age.max - age.min)
    assert outcome.kwargs == {
        "min_value": age.min - margin,
        "max_value": age.max + margin,
        "mostly": 0.99,
    }


def test_values_inside_the_widened_range_pass(frame: pd.DataFrame, contract: DataContract) -> None:
    age = contract.column("age")
    ages = frame["age"].astype("float64")
    ages.iloc[:25] = age.max + 0.2 * (age.max - age.min)
    assert _validate(frame.assign(age=ages), contract).success


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_a_single_infinite_value_counts_as_unexpected(
    frame: pd.DataFrame, contract: DataContract, value: float
) -> None:
    frame.loc[frame.index[3], "monthly_charges"] = value
    strict = ValidationConfig(contract=ContractTolerance(mostly=1.0))
    outcome = _only_failure(
        _validate(frame, contract, strict), "expect_column_values_to_be_between", "monthly_charges"
    )
    assert outcome.observed == f"1 unexpected values (0.20%), e.g. [{value!r}]"


@pytest.mark.parametrize(("unseen_rows", "passes"), [(2, True), (25, False)])
def test_unseen_category_fails_only_beyond_mostly(
    frame: pd.DataFrame, contract: DataContract, unseen_rows: int, passes: bool
) -> None:
    frame.loc[frame.index[:unseen_rows], "region"] = "atlantis"
    report = _validate(frame, contract)
    assert report.success is passes
    if not passes:
        outcome = _only_failure(report, "expect_column_values_to_be_in_set", "region")
        assert "'atlantis'" in outcome.observed
        assert set(outcome.kwargs["value_set"]) == {"east", "north", "south", "west"}


def test_one_class_target_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    report = _validate(frame.assign(churned=0), contract)
    outcome = _only_failure(report, "expect_column_unique_value_count_to_be_between", "churned")
    assert outcome.observed == "1 distinct value (minimum 2)"


def test_unknown_class_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    frame.loc[frame.index[0], "churned"] = 7
    outcome = _only_failure(
        _validate(frame, contract), "expect_column_values_to_be_in_set", "churned"
    )
    assert outcome.kwargs["mostly"] == 1.0


def test_null_target_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    labels = frame["churned"].astype("float64")
    labels.iloc[:3] = np.nan
    report = _validate(frame.assign(churned=labels), contract)
    outcome = _only_failure(report, "expect_column_values_to_not_be_null", "churned")
    assert outcome.kwargs == {"mostly": 1.0}
    assert outcome.observed.startswith("3 null values")


def test_too_few_rows_fails(frame: pd.DataFrame, contract: DataContract) -> None:
    report = _validate(frame.head(20), contract)
    assert (
        _only_failure(report, "expect_table_row_count_to_be_between").observed
        == "20 rows (minimum 50)"
    )


def test_null_rate_within_contract_margin_passes(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    # The reference has about 1% missing totals; 4% stays inside the 5-point margin, 20% does not.
    frame.loc[frame.index[:20], "total_charges"] = np.nan
    assert _validate(frame, contract).success
    frame.loc[frame.index[:100], "total_charges"] = np.nan
    _only_failure(
        _validate(frame, contract), "expect_column_values_to_not_be_null", "total_charges"
    )


@pytest.mark.parametrize(
    ("rule", "expectation"),
    [
        (ColumnRule(column="age", min=30), "expect_column_values_to_be_between"),
        (ColumnRule(column="age", max=60), "expect_column_values_to_be_between"),
        (
            ColumnRule(column="region", allowed=["north", "south"]),
            "expect_column_values_to_be_in_set",
        ),
        (
            ColumnRule(column="total_charges", max_null_fraction=0.0),
            "expect_column_values_to_not_be_null",
        ),
        (ColumnRule(column="region", unique=True), "expect_column_values_to_be_unique"),
    ],
    ids=["min", "max", "allowed", "max_null_fraction", "unique"],
)
def test_config_rule_fails(
    frame: pd.DataFrame, contract: DataContract, rule: ColumnRule, expectation: str
) -> None:
    outcome = _only_failure(
        _validate(frame, contract, ValidationConfig(rules=[rule])), expectation, rule.column
    )
    assert outcome.source == "rule"


def test_config_rules_that_hold_pass(frame: pd.DataFrame, contract: DataContract) -> None:
    rules = [
        ColumnRule(column="age", min=18, max=80),
        ColumnRule(column="region", allowed=["north", "south", "east", "west"]),
        ColumnRule(column="total_charges", max_null_fraction=0.5),
        ColumnRule(column="event_time", unique=True),
    ]
    report = _validate(frame, contract, ValidationConfig(rules=rules))
    assert report.success, report.summary()
    ruled = {o.expectation for o in report.outcomes if o.source == "rule"}
    assert ruled == {
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
    }


def test_rule_kwargs_are_recorded(frame: pd.DataFrame, contract: DataContract) -> None:
    rule = ColumnRule(column="total_charges", max_null_fraction=0.0)
    outcome = _failed(
        _validate(frame, contract, ValidationConfig(rules=[rule])),
        "expect_column_values_to_not_be_null",
        "total_charges",
    )
    assert outcome.kwargs == {"mostly": 1.0}


def test_rule_on_unknown_column_is_a_schema_failure(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    report = _validate(
        frame, contract, ValidationConfig(rules=[ColumnRule(column="nope", min=0, unique=True)])
    )
    outcome = _only_failure(report, "expect_column_to_exist", "nope")
    assert outcome.source == "schema"
    assert "nope" in outcome.observed


def test_ge_exception_becomes_a_failed_outcome(frame: pd.DataFrame, contract: DataContract) -> None:
    # A numeric bound on a text column makes GE raise inside the metric; that must not crash the run.
    report = _validate(frame, contract, ValidationConfig(rules=[ColumnRule(column="plan", min=0)]))
    outcome = _only_failure(report, "expect_column_values_to_be_between", "plan")
    assert outcome.observed.startswith("error: ")


def test_serving_frame_without_target_passes_when_target_not_required(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    serving = frame.drop(columns=["churned"])
    report = _validate(serving, contract, require_target=False)
    assert report.success, report.summary()
    assert not any(o.column == "churned" for o in report.outcomes)
    assert (
        _only_failure(_validate(serving, contract), "expect_table_columns_to_match_set").observed
        == "missing: churned"
    )


def test_target_not_required_still_checks_labels_that_are_present(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    labels = frame["churned"].astype("float64")
    labels.iloc[:100] = np.nan  # labels arrive late in monitoring data
    assert _validate(frame.assign(churned=labels), contract, require_target=False).success
    labels.iloc[100] = 5
    report = _validate(frame.assign(churned=labels), contract, require_target=False)
    _only_failure(report, "expect_column_values_to_be_in_set", "churned")


@pytest.mark.parametrize(
    ("column", "convert"),
    [
        ("event_time", lambda s: s.dt.tz_localize("UTC")),
        ("plan", lambda s: s.astype("category")),
        ("plan", lambda s: s.astype("string")),
        ("age", lambda s: s.astype("Int64")),
        ("monthly_charges", lambda s: s.astype("float32")),
    ],
    ids=["tz-aware", "category", "string", "nullable-int", "float32"],
)
def test_equivalent_dtypes_pass(
    frame: pd.DataFrame, contract: DataContract, column: str, convert: object
) -> None:
    report = _validate(frame.assign(**{column: convert(frame[column])}), contract)  # type: ignore[operator]
    assert report.success, report.summary()


def test_summary_is_one_line_naming_column_and_expectation(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    frame.loc[frame.index[:25], "age"] = 150
    report = _validate(frame.drop(columns=["plan"]), contract)
    summary = report.summary()
    assert "\n" not in summary
    assert summary.startswith(
        f"data validation failed for {URI}: 2 of {len(report.outcomes)} expectations failed: "
    )
    assert (
        "expect_column_values_to_be_between on 'age' (25 unexpected values (5.00%), e.g. [150])"
        in summary
    )
    assert "expect_table_columns_to_match_set (missing: plan)" in summary


def test_summary_stays_one_line_with_many_failures(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    broken = frame.assign(**{name: "x" for name in contract.numeric_features})
    summary = _validate(broken, contract).summary()
    assert "\n" not in summary
    assert "more" in summary


def test_to_dict_is_json_serializable_and_round_trips(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    frame.loc[frame.index[:25], "monthly_charges"] = np.inf
    report = _validate(frame, contract)
    text = json.dumps(report.to_dict(), allow_nan=False)
    raw = json.loads(text)
    assert raw["success"] is False
    assert raw["failed"] == len(report.failed) == 1
    assert ValidationReport.from_dict(raw) == report


def test_long_value_sets_are_truncated(frame: pd.DataFrame) -> None:
    wide = frame.assign(code=[f"c{i % 150}" for i in range(len(frame))])
    wide_contract = infer_contract(wide, "churned", "event_time", "classification")
    report = _validate(wide, wide_contract)
    outcome = next(
        o
        for o in report.outcomes
        if o.expectation == "expect_column_values_to_be_in_set" and o.column == "code"
    )
    assert outcome.kwargs["value_set_size"] == 150
    assert len(outcome.kwargs["value_set"]) == 20


def test_to_markdown_lists_failed_expectations_first(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    report = _validate(frame.assign(churned=0), contract)
    markdown = report.to_markdown()
    rows = [
        line
        for line in markdown.splitlines()
        if line.startswith("| ") and "expectation" not in line
    ]
    assert len(rows) == len(report.outcomes)
    assert rows[0].startswith(
        "| **FAIL** | expect_column_unique_value_count_to_be_between | `churned` |"
    )
    assert all(row.startswith("| pass |") for row in rows[1:])


def test_short_summary_is_small(frame: pd.DataFrame, contract: DataContract) -> None:
    broken = frame.assign(**{name: "x" for name in contract.numeric_features})
    report = _validate(broken, contract)
    short = report.short_summary()
    assert short["success"] is False
    assert short["evaluated"] == len(report.outcomes)
    assert short["failed"] == len(report.failed) > 5
    assert len(short["failed_expectations"]) == 5
    assert len(json.dumps(short)) < 5000


# --- the pure plan: no Great Expectations involved ------------------------------------------------


def _planned(plan, expectation: str, column: str | None = None) -> list:
    return [p for p in plan if p.expectation == expectation and p.column == column]


def test_plan_holds_the_schema_each_contract_column_and_each_rule(
    frame: pd.DataFrame, contract: DataContract
) -> None:
    config = ValidationConfig(rules=[ColumnRule(column="age", min=18, max=99), ColumnRule(column="nope", unique=True)])
    plan = plan_expectations(frame, contract, config, require_target=True)
    assert [p.expectation for p in plan[:2]] == ["expect_table_columns_to_match_set", "expect_table_row_count_to_be_between"]
    assert plan[0].arguments["column_set"] == [c.name for c in contract.columns]
    for col in contract.columns:
        (typed,) = _planned(plan, "expect_column_values_to_be_in_type_list", col.name)
        assert typed.kind == col.kind and typed.arguments["type_list"] == list(TYPE_LISTS[col.kind])
    (rule,) = [p for p in plan if p.source == "rule"]
    assert rule.arguments == {"min_value": 18, "max_value": 99, "mostly": 1.0}
    # A rule on an absent column becomes a clean existence check, not a check GE would crash on.
    assert [p.source for p in _planned(plan, "expect_column_to_exist", "nope")] == ["schema"]


def test_plan_reports_long_value_sets_cut_but_hands_ge_all_of_them(frame: pd.DataFrame) -> None:
    values = [f"v{i}" for i in range(50)]
    config = ValidationConfig(rules=[ColumnRule(column="region", allowed=values)])
    local = infer_contract(frame, "churned", "event_time", "classification")
    (rule,) = [p for p in plan_expectations(frame, local, config, require_target=True) if p.source == "rule"]
    assert rule.arguments["value_set"] == values
    assert len(rule.kwargs["value_set"]) == MAX_VALUE_SET and rule.kwargs["value_set_size"] == 50


def test_plan_without_required_target_skips_an_absent_target(frame: pd.DataFrame, contract: DataContract) -> None:
    serving = frame.drop(columns=[contract.target])
    plan = plan_expectations(serving, contract, ValidationConfig(), require_target=False)
    assert contract.target not in plan[0].arguments["column_set"]
    assert all(p.column != contract.target for p in plan)
    with_target = plan_expectations(frame, contract, ValidationConfig(), require_target=True)
    assert _planned(with_target, "expect_column_unique_value_count_to_be_between", contract.target)
