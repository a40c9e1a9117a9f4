"""Behavioural tests of a fitted model on its holdout: invariance, directional, minimum functionality.

Metrics say how often a model is right; these say whether it behaves as the domain expects: a field
that must not matter does not flip predictions, raising a risk factor does not lower the risk, and a
few obvious cases get the obvious answer. A failed test refuses the run like a failed gate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import BehaviourConfig, DirectionalTest, InvarianceTest, MinimumTest
from mlops.contract import DataContract
from mlops.errors import ConfigError, QualityGateFailed
from mlops.metrics import predict
from mlops.training import feature_frame

# The run artifact the train flow logs the report as; the model card and `mlops ci` read it.
REPORT_ARTIFACT = "behaviour/report.json"
# The report keeps a few failing rows per test: enough to see the pattern, small enough to read.
MAX_FAILING_CASES = 10


class BehaviourTestFailed(QualityGateFailed):
    """A behavioural test failed on the holdout; the model must not be registered (exit 4)."""


@dataclass(frozen=True)
class BehaviourResult:
    """One test's verdict, with at most MAX_FAILING_CASES rows that broke it."""

    name: str
    kind: str
    passed: bool
    detail: str
    failing_cases: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BehaviourReport:
    """Every test's result; the artifact `behaviour/report.json` is `to_dict()`."""

    tests: list[BehaviourResult]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tests)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "tests": [asdict(t) for t in self.tests]}

    def failure_line(self) -> str:
        """The one-line reason naming every failed test."""
        failed = [f"'{t.name}' ({t.kind}): {t.detail}" for t in self.tests if not t.passed]
        return "behavioural test failed: " + "; ".join(failed)

    def to_markdown(self) -> str:
        lines = ["| test | kind | result | detail |", "|---|---|---|---|"]
        lines += [f"| {t.name} | {t.kind} | {'pass' if t.passed else 'FAIL'} | {t.detail} |" for t in self.tests]
        return "\n".join(lines) + "\n"


def validate_behaviour(behaviour: BehaviourConfig, frame: pd.DataFrame, contract_columns: Iterable[str], task: str) -> None:
    """Refuse tests on unknown or non-feature columns, or missing task-specific keys, naming the key.

    Runs on the loaded data before anything is trained: `contract_columns` are the feature columns
    (every column but the target and timestamp).
    """
    features = list(contract_columns)
    known = ", ".join(features)
    for i, test in enumerate(behaviour.tests):
        key = f"behaviour.tests.{i}"
        if isinstance(test, MinimumTest):
            for j, case in enumerate(test.cases):
                for column in case.row:
                    if column not in features:
                        raise ConfigError(
                            f"{key}.cases.{j}.row: unknown feature column '{column}' in test '{test.name}' (features: {known})"
                        )
            if task == "regression" and test.tolerance is None:
                raise ConfigError(f"{key}.tolerance: test '{test.name}' needs a tolerance for a regression model")
            continue
        if test.column not in features:
            raise ConfigError(f"{key}.column: unknown feature column '{test.column}' in test '{test.name}' (features: {known})")
        if isinstance(test, DirectionalTest) and not pd.api.types.is_numeric_dtype(frame[test.column]):
            raise ConfigError(f"{key}.column: test '{test.name}' adds delta to '{test.column}', which is not numeric")
        if isinstance(test, InvarianceTest) and task == "regression" and test.tolerance is None:
            raise ConfigError(f"{key}.tolerance: test '{test.name}' needs a tolerance for a regression model")
        if isinstance(test, DirectionalTest) and task == "regression" and test.positive_class is not None:
            raise ConfigError(f"{key}.positive_class: test '{test.name}' is on a regression model, which has no classes")


def run_behaviour(
    model: Any, holdout: pd.DataFrame, contract: DataContract, behaviour: BehaviourConfig, seed: int
) -> BehaviourReport:
    """Run every configured test on (a seeded sample of at most `max_rows` of) the holdout."""
    features = feature_frame(holdout, contract)
    if len(features) > behaviour.max_rows:
        features = features.sample(n=behaviour.max_rows, random_state=seed)
    features = features.reset_index(drop=True)
    results = []
    for test in behaviour.tests:
        if isinstance(test, InvarianceTest):
            results.append(check_invariance(model, features, test, contract.task, seed))
        elif isinstance(test, DirectionalTest):
            results.append(check_directional(model, features, test, contract.task))
        else:
            results.append(check_minimum(model, features, test, contract))
    return BehaviourReport(results)


def enforce_behaviour(report: BehaviourReport) -> None:
    """Raise BehaviourTestFailed naming each failed test, so the model is not registered."""
    if not report.passed:
        raise BehaviourTestFailed(report.failure_line(), gate_results=report)


def check_invariance(model: Any, features: pd.DataFrame, test: InvarianceTest, task: str, seed: int) -> BehaviourResult:
    """Share of rows whose prediction changes when the column is set to `value` (or permuted)."""
    changed = features.copy()
    if test.permute:
        changed[test.column] = np.random.default_rng(seed).permutation(features[test.column].to_numpy())
        how = "permuted"
    else:
        changed[test.column] = test.value
        how = f"set to {test.value!r}"
    before, after = _predict(model, features, task), _predict(model, changed, task)
    if task == "classification":
        flipped = before != after
    else:
        flipped = np.abs(after.astype(float) - before.astype(float)) > float(test.tolerance or 0.0)
    rate = float(flipped.mean()) if len(flipped) else 0.0
    passed = rate <= test.max_flip_rate
    detail = f"{test.column} {how}: {rate:.2%} of {len(features)} predictions changed (max {test.max_flip_rate:.2%})"
    cases = [] if passed else _cases(features, changed, test.column, before, after, np.flatnonzero(flipped))
    return BehaviourResult(test.name, test.kind, passed, detail, cases)


def check_directional(model: Any, features: pd.DataFrame, test: DirectionalTest, task: str) -> BehaviourResult:
    """Mean move of the positive-class probability (or the output) when `delta` is added to the column."""
    changed = features.copy()
    changed[test.column] = features[test.column] + test.delta
    before, after = _output(model, features, task, test.positive_class), _output(model, changed, task, test.positive_class)
    moves = after - before
    sign = 1.0 if test.direction == "increase" else -1.0
    mean_move = float(moves.mean()) if len(moves) else 0.0
    passed = sign * mean_move >= -test.tolerance
    what = "probability" if task == "classification" else "output"
    # + 0.0: a zero tolerance reads "0", not "-0".
    bound = -sign * test.tolerance + 0.0
    detail = f"{test.column} {test.delta:+g}: mean {what} move {mean_move:+.4f} (expected {'>=' if sign > 0 else '<='} {bound:g})"
    cases: list[dict[str, Any]] = []
    if not passed:
        wrong = np.flatnonzero(sign * moves < 0)
        worst = wrong[np.argsort(sign * moves[wrong], kind="stable")]
        cases = _cases(features, changed, test.column, before, after, worst)
    return BehaviourResult(test.name, test.kind, passed, detail, cases)


def check_minimum(model: Any, features: pd.DataFrame, test: MinimumTest, contract: DataContract) -> BehaviourResult:
    """Each case (missing features filled with the holdout's typical value) gets its expected output."""
    typical = typical_row(features, contract)
    rows = pd.DataFrame([{**typical, **case.row} for case in test.cases], columns=list(features.columns))
    for name in contract.numeric_features:
        rows[name] = pd.to_numeric(rows[name], errors="coerce")
    predictions = _predict(model, rows, contract.task)
    failing: list[dict[str, Any]] = []
    for case, predicted in zip(test.cases, predictions, strict=True):
        if contract.task == "classification":
            ok = _same_class(predicted, case.expected)
        else:
            ok = abs(float(predicted) - float(case.expected)) <= float(test.tolerance or 0.0)
        if not ok:
            failing.append({**_plain(case.row), "expected": _plain_value(case.expected), "predicted": _plain_value(predicted)})
    passed = not failing
    detail = f"{len(test.cases) - len(failing)} of {len(test.cases)} cases as expected"
    return BehaviourResult(test.name, test.kind, passed, detail, failing[:MAX_FAILING_CASES])


def typical_row(features: pd.DataFrame, contract: DataContract) -> dict[str, Any]:
    """The median of each numeric feature and the most frequent value of the others."""
    numeric = set(contract.numeric_features)
    row: dict[str, Any] = {}
    for name in features.columns:
        column = features[name].dropna()
        if column.empty:
            row[name] = np.nan
        elif name in numeric:
            row[name] = float(column.median())
        else:
            row[name] = column.mode().iloc[0]
    return row


def _predict(model: Any, features: pd.DataFrame, task: str) -> np.ndarray:
    return predict(model, features, task).pred


def _output(model: Any, features: pd.DataFrame, task: str, positive_class: Any) -> np.ndarray:
    """The followed class's probability (classification) or the prediction (regression)."""
    predictions = predict(model, features, task)
    if task != "classification":
        return predictions.pred.astype(float)
    classes = list(predictions.classes or ())
    if predictions.score is None or not classes:
        raise ConfigError(f"behaviour: {type(model).__name__} gives no class scores, so no directional test can follow one")
    if positive_class is None:
        index = len(classes) - 1
    else:
        matches = [i for i, c in enumerate(classes) if _same_class(c, positive_class)]
        if not matches:
            raise ConfigError(f"behaviour: positive_class {positive_class!r} is not a class of the model ({classes})")
        index = matches[0]
    score = predictions.score
    return score if score.ndim == 1 else score[:, index]


def _same_class(predicted: Any, expected: Any) -> bool:
    """A YAML `1` and a model's numpy 1 (or '1') are the same class."""
    if predicted == expected:
        return True
    return str(_plain_value(predicted)) == str(expected)


def _cases(
    before_rows: pd.DataFrame, after_rows: pd.DataFrame, column: str,
    before: np.ndarray, after: np.ndarray, positions: Sequence[int],
) -> list[dict[str, Any]]:
    """The first MAX_FAILING_CASES rows at `positions`, with the changed value and both outputs."""
    out = []
    for pos in list(positions)[:MAX_FAILING_CASES]:
        row = _plain(before_rows.iloc[int(pos)].to_dict())
        row[f"{column} (changed)"] = _plain_value(after_rows.iloc[int(pos)][column])
        row["before"], row["after"] = _plain_value(before[pos]), _plain_value(after[pos])
        out.append(row)
    return out


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _plain_value(v) for k, v in row.items()}


def _plain_value(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, NaN to None, times to ISO text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
