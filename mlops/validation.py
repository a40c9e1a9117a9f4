"""Great Expectations adapter: validate a frame against its data contract and the configured rules.

GE is imported lazily inside the functions and its results are turned into our own frozen
dataclasses here, so no GE object escapes this module (STYLE.md rule 3).
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlops.config import ColumnRule, ValidationConfig
from mlops.contract import MAX_ABS_VALUE, ColumnContract, DataContract, Kind, column_kind

Source = Literal["schema", "contract", "rule"]

# Long category sets are cut in reports so an artifact or a tag stays readable.
MAX_VALUE_SET = 20
# How many failed expectations the one-line summary and the MLflow tag name.
MAX_LISTED_FAILURES = 5
MAX_EXAMPLES = 3
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
_NAMEABLE_EXTENSION = {*_NULLABLE_NUMERIC, "BooleanDtype"}


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, in our terms."""

    expectation: str
    column: str | None
    success: bool
    source: Source
    kwargs: dict[str, Any] = field(hash=False)
    observed: str

    def describe(self) -> str:
        """Name the expectation, its column and what was observed, on one line."""
        where = f" on '{self.column}'" if self.column is not None else ""
        return f"{self.expectation}{where} ({self.observed})"


@dataclass(frozen=True)
class ValidationReport:
    """Every expectation the data was held to, and whether it met them all."""

    success: bool
    data_uri: str
    row_count: int
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def failed(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def summary(self) -> str:
        """One line for a log or an exception message."""
        if self.success:
            return (
                f"data validation passed for {self.data_uri}: "
                f"{len(self.outcomes)} expectations on {self.row_count} rows"
            )
        failed = self.failed
        listed = "; ".join(o.describe() for o in failed[:MAX_LISTED_FAILURES])
        more = (
            f"; and {len(failed) - MAX_LISTED_FAILURES} more"
            if len(failed) > MAX_LISTED_FAILURES
            else ""
        )
        return (
            f"data validation failed for {self.data_uri}: {len(failed)} of {len(self.outcomes)} "
            f"expectations failed: {listed}{more}"
        )

    def to_markdown(self) -> str:
        """A table of every expectation, failed first, for a Prefect markdown artifact."""
        verdict = "passed" if self.success else "failed"
        lines = [
            f"## Data validation {verdict}",
            "",
            f"`{_cell(self.data_uri)}`: {self.row_count} rows, {len(self.outcomes)} expectations, "
            f"{len(self.failed)} failed",
            "",
            "| status | expectation | column | source | observed |",
            "|---|---|---|---|---|",
        ]
        for o in sorted(self.outcomes, key=lambda o: o.success):
            status = "pass" if o.success else "**FAIL**"
            column = f"`{_cell(o.column)}`" if o.column is not None else ""
            lines.append(
                f"| {status} | {o.expectation} | {column} | {o.source} | {_cell(o.observed)} |"
            )
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for an MLflow artifact."""
        return {
            "success": self.success,
            "data_uri": self.data_uri,
            "row_count": self.row_count,
            "evaluated": len(self.outcomes),
            "failed": len(self.failed),
            "outcomes": [asdict(o) for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ValidationReport:
        """Rebuild a report from `to_dict` output (e.g. a downloaded artifact)."""
        return cls(
            success=bool(raw["success"]),
            data_uri=str(raw["data_uri"]),
            row_count=int(raw["row_count"]),
            outcomes=tuple(ExpectationOutcome(**o) for o in raw["outcomes"]),
        )

    def short_summary(self) -> dict[str, Any]:
        """A small dict for an MLflow tag, well under its 5000-character limit."""
        return {
            "success": self.success,
            "evaluated": len(self.outcomes),
            "failed": len(self.failed),
            "failed_expectations": [
                _clip(o.describe(), 300) for o in self.failed[:MAX_LISTED_FAILURES]
            ],
        }


@dataclass(frozen=True)
class _Planned:
    """One expectation to hand to GE, with what our report says about it."""

    source: Source
    column: str | None
    expectation: Any  # a GE Expectation instance
    kwargs: dict[str, Any]
    kind: Kind | None = None  # for type checks: the contract kind that was expected


def validate_frame(
    frame: pd.DataFrame,
    contract: DataContract,
    config: ValidationConfig,
    data_uri: str,
    *,
    require_target: bool = True,
) -> ValidationReport:
    """Check `frame` against the contract and the configured rules with Great Expectations.

    With require_target=False (serving or monitoring data) the target column may be absent; when
    present its labels must be known classes, but nulls and a single class are allowed there.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if not all(isinstance(c, str) for c in frame.columns):
        frame = frame.rename(columns=str)
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        frame = frame.loc[:, ~frame.columns.duplicated()]

    with _quiet_ge():
        planned = _plan(frame, contract, config, require_target=require_target)
        results = _run_suite(_frame_for_ge(frame, contract), planned)
    outcomes = _one_failure_each([_outcome(p, results.get(i), frame, config) for i, p in enumerate(planned)])
    if duplicated:
        outcomes.insert(
            0,
            ExpectationOutcome(
                expectation="expect_table_columns_to_match_set",
                column=None,
                success=False,
                source="schema",
                kwargs={"exact_match": True},
                observed=f"duplicate columns: {', '.join(duplicated)}",
            ),
        )
    return ValidationReport(
        success=all(o.success for o in outcomes),
        data_uri=data_uri,
        row_count=len(frame),
        outcomes=tuple(outcomes),
    )


def _one_failure_each(outcomes: list[ExpectationOutcome]) -> list[ExpectationOutcome]:
    """Keep the first failure of each expectation on a column: an infinity breaks both the
    finiteness bound and the contract range, and saying it twice reads like two problems."""
    seen: set[tuple[str, str | None]] = set()
    kept = []
    for outcome in outcomes:
        key = (outcome.expectation, outcome.column)
        if not outcome.success:
            if key in seen:
                continue
            seen.add(key)
        kept.append(outcome)
    return kept


def _plan(
    frame: pd.DataFrame, contract: DataContract, config: ValidationConfig, *, require_target: bool
) -> list[_Planned]:
    """Build the suite from the contract and the rules, skipping checks GE could only crash on."""
    import great_expectations.expectations as gxe

    tol = config.contract
    present = set(frame.columns)
    target_absent_ok = not require_target and contract.target not in present
    expected_columns = [
        c.name for c in contract.columns if not (target_absent_ok and c.name == contract.target)
    ]
    plan = [
        _Planned(
            "schema",
            None,
            gxe.ExpectTableColumnsToMatchSet(column_set=expected_columns, exact_match=True),
            {"column_set": _truncated(expected_columns), "exact_match": True},
        ),
        _Planned(
            "schema",
            None,
            gxe.ExpectTableRowCountToBeBetween(min_value=config.min_rows),
            {"min_value": config.min_rows},
        ),
    ]
    for col in contract.columns:
        if col.name in present:
            plan.extend(
                _contract_checks(
                    gxe, frame[col.name], col, contract, tol, require_target=require_target
                )
            )
    for rule in config.rules:
        if rule.column == contract.target and target_absent_ok:
            continue
        plan.extend(_rule_checks(gxe, rule, present))
    return plan


def _contract_checks(
    gxe: Any,
    series: pd.Series,
    col: ColumnContract,
    contract: DataContract,
    tol: Any,
    *,
    require_target: bool,
) -> list[_Planned]:
    name = col.name
    type_list = list(TYPE_LISTS[col.kind])
    checks = [
        _Planned(
            "contract",
            name,
            gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=type_list),
            {"type_list": type_list},
            kind=col.kind,
        ),
    ]
    is_target = name == contract.target
    if is_target and require_target:
        checks.append(_not_null(gxe, "contract", name, 1.0))
    elif not is_target:
        mostly = round(1.0 - (col.null_fraction + tol.null_rate_margin), 6)
        checks.append(_not_null(gxe, "contract", name, mostly if mostly > 0 else _SOME_VALUES))
    # A range check on strings (or a set check on numbers) makes GE raise; the type check reports it.
    if column_kind(series) != col.kind:
        return checks
    if is_target and contract.task == "classification":
        if contract.classes is not None:
            checks.append(_in_set(gxe, "contract", name, list(contract.classes), 1.0))
        if require_target:
            checks.append(
                _Planned(
                    "contract",
                    name,
                    gxe.ExpectColumnUniqueValueCountToBeBetween(column=name, min_value=2),
                    {"min_value": 2},
                )
            )
    elif col.role == "feature" and col.kind == "numeric":
        # Every value, not `mostly`: one infinity is enough to make the fit fail.
        checks.append(_between(gxe, "contract", name, -MAX_ABS_VALUE, MAX_ABS_VALUE, 1.0))
        if col.min is not None and col.max is not None:
            margin = tol.range_margin * (col.max - col.min)
            checks.append(
                _between(gxe, "contract", name, col.min - margin, col.max + margin, tol.mostly)
            )
    elif col.role == "feature" and col.kind == "categorical" and col.categories is not None:
        checks.append(_in_set(gxe, "contract", name, list(col.categories), tol.mostly))
    return checks


def _rule_checks(gxe: Any, rule: ColumnRule, present: set[str]) -> list[_Planned]:
    name = rule.column
    if name not in present:
        # ExpectColumnToExist fails cleanly where a column check would make GE raise.
        return [_Planned("schema", name, gxe.ExpectColumnToExist(column=name), {})]
    checks = []
    if rule.min is not None or rule.max is not None:
        checks.append(_between(gxe, "rule", name, rule.min, rule.max, 1.0))
    if rule.allowed is not None:
        checks.append(_in_set(gxe, "rule", name, list(rule.allowed), 1.0))
    if rule.max_null_fraction is not None and 1.0 - rule.max_null_fraction > 0:
        checks.append(_not_null(gxe, "rule", name, round(1.0 - rule.max_null_fraction, 6)))
    if rule.unique:
        checks.append(_Planned("rule", name, gxe.ExpectColumnValuesToBeUnique(column=name), {}))
    return checks


def _not_null(gxe: Any, source: Source, name: str, mostly: float) -> _Planned:
    return _Planned(
        source,
        name,
        gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=mostly),
        {"mostly": mostly},
    )


def _in_set(gxe: Any, source: Source, name: str, values: list[Any], mostly: float) -> _Planned:
    return _Planned(
        source,
        name,
        gxe.ExpectColumnValuesToBeInSet(column=name, value_set=values, mostly=mostly),
        {"value_set": _truncated(values), "value_set_size": len(values), "mostly": mostly},
    )


def _between(
    gxe: Any, source: Source, name: str, lo: float | None, hi: float | None, mostly: float
) -> _Planned:
    expectation = gxe.ExpectColumnValuesToBeBetween(
        column=name, min_value=lo, max_value=hi, mostly=mostly
    )
    return _Planned(source, name, expectation, {"min_value": lo, "max_value": hi, "mostly": mostly})


def _frame_for_ge(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Hand GE plain dtypes where its type check cannot name ours (tz-aware, category, string, arrow)."""
    kinds = {c.name: c.kind for c in contract.columns}
    converted: dict[str, pd.Series] = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, np.dtype) or type(dtype).__name__ in _NAMEABLE_EXTENSION:
            continue
        series = frame[name]
        kind = column_kind(series)
        if kind != kinds.get(name, kind):
            continue  # wrong kind anyway; let the type check fail on the real dtype
        try:
            converted[name] = _plain_series(series, kind)
        except (TypeError, ValueError):
            continue
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for name, series in converted.items():
        out[name] = series
    return out


def _plain_series(series: pd.Series, kind: Kind) -> pd.Series:
    if kind == "datetime":
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert(None)
        return series.astype("datetime64[ns]")
    if kind == "numeric":
        return series.astype("Float64")
    if kind == "boolean":
        return series.astype("boolean")
    return series.astype(object)


def _run_suite(frame: pd.DataFrame, planned: list[_Planned]) -> dict[int, Any]:
    """Run the planned expectations in one GE validation; results keyed by plan index."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GE draws a tqdm bar on stderr for every validation unless told not to.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    tag = uuid.uuid4().hex
    batch = (
        context.data_sources.add_pandas(name=f"mlops-{tag}")
        .add_dataframe_asset(name="frame")
        .add_batch_definition_whole_dataframe(name="whole")
    )
    for index, item in enumerate(planned):
        item.expectation.meta = {"mlops_index": index}
    # Handing GE the whole list at once: add_expectation re-serialises the suite on every call.
    expectations = [item.expectation for item in planned]
    suite = context.suites.add(
        gx.ExpectationSuite(name=f"mlops-suite-{tag}", expectations=expectations)
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"mlops-validation-{tag}", data=batch, suite=suite)
    )
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    by_index: dict[int, Any] = {}
    for item in result.results:
        config = item.expectation_config
        index = (config.meta or {}).get("mlops_index")
        if not isinstance(index, int) or not 0 <= index < len(planned):
            continue
        # GE reorders results; the index in meta plus the type are what tie a result to its plan.
        if config.type != planned[index].expectation.expectation_type:
            continue
        by_index[index] = item
    return by_index


@contextmanager
def _quiet_ge() -> Iterator[None]:
    """Hold GE's loggers at WARNING while we use them: its import and every run log INFO chatter."""
    parent = logging.getLogger("great_expectations")
    saved = {parent: parent.level}
    parent.setLevel(max(parent.level, logging.WARNING))
    try:
        import great_expectations  # noqa: F401  # imported here so its import-time chatter is held too

        # GE pins this module's logger to INFO when imported, bypassing the parent's level.
        pinned = logging.getLogger("great_expectations.data_context.types.base")
        saved[pinned] = pinned.level
        pinned.setLevel(max(pinned.level, logging.WARNING))
        yield
    finally:
        for logger, level in saved.items():
            logger.setLevel(level)


def _outcome(
    item: _Planned, result: Any, frame: pd.DataFrame, config: ValidationConfig
) -> ExpectationOutcome:
    expectation = item.expectation.expectation_type
    base = {
        "expectation": expectation,
        "column": item.column,
        "source": item.source,
        "kwargs": _jsonable(item.kwargs),
    }
    if result is None:
        return ExpectationOutcome(
            **base, success=False, observed="no result returned by Great Expectations"
        )
    error = _exception_message(result.exception_info)
    if error is not None:
        return ExpectationOutcome(**base, success=False, observed=f"error: {error}")
    success = bool(result.success)
    observed = _observed(expectation, item, result.result or {}, frame, config, success)
    return ExpectationOutcome(**base, success=success, observed=observed)


def _exception_message(info: Any) -> str | None:
    """GE reports exceptions either flat or nested per metric; return the first message raised."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return _clip(_one_line(str(info.get("exception_message") or "unknown error")), 300)
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return _clip(_one_line(str(value.get("exception_message") or "unknown error")), 300)
    return None


def _observed(
    expectation: str,
    item: _Planned,
    result: dict[str, Any],
    frame: pd.DataFrame,
    config: ValidationConfig,
    success: bool,
) -> str:
    """A short human reading of GE's result dict for one expectation type."""
    observed = result.get("observed_value")
    if expectation == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        expected = set(item.expectation.column_set or [])
        missing = mismatched.get("missing", sorted(expected - set(frame.columns)))
        extra = mismatched.get("unexpected", sorted(set(frame.columns) - expected))
        parts = [
            f"missing: {', '.join(map(str, missing))}" if missing else "",
            f"extra: {', '.join(map(str, extra))}" if extra else "",
        ]
        text = "; ".join(p for p in parts if p)
        return _clip(text, 500) if text else f"{len(frame.columns)} columns as expected"
    if expectation == "expect_table_row_count_to_be_between":
        return (
            f"{observed if observed is not None else len(frame)} rows (minimum {config.min_rows})"
        )
    if expectation == "expect_column_to_exist":
        return "column present" if success else f"column '{item.column}' is not in the data"
    if expectation == "expect_column_unique_value_count_to_be_between":
        return f"{observed} distinct value{'' if observed == 1 else 's'} (minimum 2)"
    if expectation == "expect_column_values_to_be_in_type_list":
        dtype = str(frame[item.column].dtype) if item.column in frame.columns else "?"
        if success:
            return f"dtype {dtype}"
        text = f"dtype {dtype}, expected {item.kind}"
        if "unexpected_count" in result:
            text += f"; {_unexpected(result, 'values of another type')}"
        return text
    if "unexpected_count" in result:
        noun = {
            "expect_column_values_to_not_be_null": "null values",
            "expect_column_values_to_be_unique": "duplicated values",
        }.get(expectation, "unexpected values")
        return _unexpected(result, noun, examples=noun != "null values")
    return (
        _clip(_one_line(str(observed)), 200)
        if observed is not None
        else ("ok" if success else "failed")
    )


def _unexpected(result: dict[str, Any], noun: str, *, examples: bool = True) -> str:
    count = int(result.get("unexpected_count") or 0)
    percent = float(result.get("unexpected_percent") or 0.0)
    text = f"{count} {noun} ({percent:.2f}%)"
    if examples and count:
        seen: list[str] = []
        for value in result.get("partial_unexpected_list") or []:
            shown = _clip(repr(_plain(value)), 40)
            if shown not in seen:
                seen.append(shown)
            if len(seen) == MAX_EXAMPLES:
                break
        if seen:
            text += f", e.g. [{', '.join(seen)}]"
    return text


def _truncated(values: Iterable[Any]) -> list[Any]:
    return list(values)[:MAX_VALUE_SET]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _jsonable(value: Any) -> Any:
    """Plain JSON types only; non-finite floats become strings so json.dumps stays strict-valid."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")
