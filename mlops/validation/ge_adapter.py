"""Great Expectations adapter: run the planned expectations on a frame and read GE's results.

GE is imported lazily inside the functions and its results are turned into our own frozen
dataclasses here, so no GE object escapes this module (STYLE.md rule 3). What to expect comes from
the pure plan (`mlops.validation.plan`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import ValidationConfig
from mlops.contract import DataContract, Kind, column_kind
from mlops.validation.plan import NAMEABLE_EXTENSION, PlannedExpectation, plan_expectations
from mlops.validation.report import (
    ExpectationOutcome,
    ValidationReport,
    clip,
    one_failure_each,
    one_line,
)

MAX_EXAMPLES = 3


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
        planned = plan_expectations(frame, contract, config, require_target=require_target)
        results = _run_suite(_frame_for_ge(frame, contract), planned)
    outcomes = one_failure_each([_outcome(p, results.get(i), frame, config) for i, p in enumerate(planned)])
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


def _frame_for_ge(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """Hand GE plain dtypes where its type check cannot name ours (tz-aware, category, string, arrow)."""
    kinds = {c.name: c.kind for c in contract.columns}
    converted: dict[str, pd.Series] = {}
    for name in frame.columns:
        dtype = frame[name].dtype
        if isinstance(dtype, np.dtype) or type(dtype).__name__ in NAMEABLE_EXTENSION:
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


def _run_suite(frame: pd.DataFrame, planned: list[PlannedExpectation]) -> dict[int, Any]:
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
    # Handing GE the whole list at once: add_expectation re-serialises the suite on every call.
    expectations = [_expectation(item, index) for index, item in enumerate(planned)]
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
        if config.type != planned[index].expectation:
            continue
        by_index[index] = item
    return by_index


def _expectation(item: PlannedExpectation, index: int) -> Any:
    """The GE expectation for one planned item, tagged with its plan index."""
    import great_expectations.expectations as gxe

    cls = getattr(gxe, "".join(part.title() for part in item.expectation.split("_")))
    column = {} if item.column is None else {"column": item.column}
    expectation = cls(**column, **item.arguments)
    expectation.meta = {"mlops_index": index}
    return expectation


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
    item: PlannedExpectation, result: Any, frame: pd.DataFrame, config: ValidationConfig
) -> ExpectationOutcome:
    expectation = item.expectation
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
        return clip(one_line(str(info.get("exception_message") or "unknown error")), 300)
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return clip(one_line(str(value.get("exception_message") or "unknown error")), 300)
    return None


def _observed(
    expectation: str,
    item: PlannedExpectation,
    result: dict[str, Any],
    frame: pd.DataFrame,
    config: ValidationConfig,
    success: bool,
) -> str:
    """A short human reading of GE's result dict for one expectation type."""
    observed = result.get("observed_value")
    if expectation == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        expected = set(item.arguments.get("column_set") or [])
        missing = mismatched.get("missing", sorted(expected - set(frame.columns)))
        extra = mismatched.get("unexpected", sorted(set(frame.columns) - expected))
        parts = [
            f"missing: {', '.join(map(str, missing))}" if missing else "",
            f"extra: {', '.join(map(str, extra))}" if extra else "",
        ]
        text = "; ".join(p for p in parts if p)
        return clip(text, 500) if text else f"{len(frame.columns)} columns as expected"
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
        clip(one_line(str(observed)), 200)
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
            shown = clip(repr(_plain(value)), 40)
            if shown not in seen:
                seen.append(shown)
            if len(seen) == MAX_EXAMPLES:
                break
        if seen:
            text += f", e.g. [{', '.join(seen)}]"
    return text


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
