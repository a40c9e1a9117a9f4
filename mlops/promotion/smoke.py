"""Smoke test of a staged model, loaded the way the serving app loads it.

Pure except for the loader it is given (the flow passes one that goes through the registry alias), so
the checks are unit-testable with an in-memory model. Any failed check stops the promotion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract import DataContract
from mlops.training import feature_frame

LATENCY_CALLS = 20
LATENCY_QUANTILE = 95
# First calls pay lazy imports and caches (validation, BLAS set-up): not the model's steady cost.
LATENCY_WARMUP_CALLS = 3


@dataclass(frozen=True)
class ServedModel:
    """What serving holds for one alias: the pipeline, its stored contract, signature and example."""

    version: str
    pipeline: Any
    contract: DataContract
    input_columns: tuple[str, ...] | None
    input_example: pd.DataFrame | None


@dataclass(frozen=True)
class SmokeCheck:
    """One smoke check and what it saw."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SmokeReport:
    """Every smoke check of one version; `passed` only when all of them passed."""

    version: str | None
    checks: tuple[SmokeCheck, ...]
    latency_p95_ms: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        """One line: what failed, or that everything passed."""
        failed = [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]
        if failed:
            return "smoke test failed: " + "; ".join(failed)
        return f"smoke test passed ({len(self.checks)} checks)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "passed": self.passed,
            "latency_p95_ms": self.latency_p95_ms,
            "checks": [asdict(c) for c in self.checks],
        }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def check_outputs(model: ServedModel, features: pd.DataFrame, what: str) -> SmokeCheck:
    """Predict `features`; every output must be a known class (classification) or finite (regression)."""
    name = f"predict:{what}"
    try:
        pred = np.asarray(model.pipeline.predict(features))
        proba = (
            np.asarray(model.pipeline.predict_proba(features), dtype=float)
            if model.contract.task == "classification" and hasattr(model.pipeline, "predict_proba")
            else None
        )
    except Exception as err:  # any failure to predict is exactly what a smoke test must catch
        return SmokeCheck(name, False, f"predict raised {type(err).__name__}: {' '.join(str(err).split())[:300]}")
    if pred.shape[0] != len(features):
        return SmokeCheck(name, False, f"{pred.shape[0]} predictions for {len(features)} rows")
    if model.contract.task == "classification":
        known = {str(c) for c in (model.contract.classes or ())}
        unknown = sorted({str(_plain(v)) for v in pred.tolist()} - known)
        if not known or unknown:
            return SmokeCheck(name, False, f"predicted classes outside the contract's {sorted(known)}: {unknown[:5]}")
        if proba is not None:
            if not np.isfinite(proba).all() or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-6):
                return SmokeCheck(name, False, "predict_proba rows are not finite probabilities summing to 1")
    else:
        values = pred.astype(float)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            return SmokeCheck(name, False, f"{bad} of {len(values)} predictions are not finite")
    return SmokeCheck(name, True, f"{len(features)} rows predicted")


def check_signature(model: ServedModel) -> SmokeCheck:
    """The logged signature must name exactly the contract's feature columns, in order."""
    expected = list(model.contract.feature_names)
    if model.input_columns is None:
        return SmokeCheck("signature", False, "the model has no input signature")
    got = list(model.input_columns)
    if got != expected:
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        detail = f"signature columns differ from the contract (missing {missing}, extra {extra})"
        if not missing and not extra:
            detail = "signature columns are in a different order than the contract's"
        return SmokeCheck("signature", False, detail)
    return SmokeCheck("signature", True, f"{len(got)} columns match the contract")


def measure_latency(
    model: ServedModel, row: pd.DataFrame, calls: int = LATENCY_CALLS, clock: Callable[[], float] = time.process_time
) -> float:
    """p95 of single-row predict time in milliseconds of CPU, after a few warm-up calls.

    CPU time, not wall time: the gate judges what the model costs, not the machine's load. On the
    2-core machine with three busy loops beside it, a logistic pipeline's wall-clock p95 went
    from 4.5 to 8.8 ms (and a demo's to 682 ms, refusing v1) while its CPU p95 stayed 0.5-0.7 ms,
    so the same version gets the same verdict on a busy worker. The process's CPU time counts
    the threads a model predicts on (OpenMP), which the calling thread's alone would miss.
    """
    for _ in range(LATENCY_WARMUP_CALLS):
        model.pipeline.predict(row)
    timings = []
    for _ in range(calls):
        start = clock()
        model.pipeline.predict(row)
        timings.append((clock() - start) * 1000.0)
    return float(np.percentile(timings, LATENCY_QUANTILE))


def smoke_test(
    load: Callable[[], ServedModel],
    holdout: pd.DataFrame,
    sample_rows: int,
    max_latency_ms: float,
    seed: int = 0,
    clock: Callable[[], float] = time.process_time,
) -> SmokeReport:
    """Load the staged model and check signature, outputs on the example and a sample, and latency."""
    try:
        model = load()
    except Exception as err:  # a model that cannot be loaded is the first thing to refuse
        detail = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
        return SmokeReport(None, (SmokeCheck("load", False, detail),))
    checks = [SmokeCheck("load", True, f"v{model.version} loaded"), check_signature(model)]
    if model.input_example is None:
        checks.append(SmokeCheck("predict:input_example", False, "the model has no stored input example"))
    else:
        try:
            example = feature_frame(model.input_example, model.contract)
        except Exception as err:
            checks.append(SmokeCheck("predict:input_example", False, f"{type(err).__name__}: {err}"))
        else:
            checks.append(check_outputs(model, example, "input_example"))
    latency = None
    try:
        rows = min(sample_rows, len(holdout))
        sample = feature_frame(holdout.sample(n=rows, random_state=seed), model.contract)
    except Exception as err:
        checks.append(SmokeCheck("predict:holdout_sample", False, f"{type(err).__name__}: {err}"))
        return SmokeReport(model.version, tuple(checks))
    outputs = check_outputs(model, sample, "holdout_sample")
    checks.append(outputs)
    if outputs.passed and rows:
        latency = measure_latency(model, sample.iloc[:1], clock=clock)
        ok = latency <= max_latency_ms
        relation = "<=" if ok else ">"
        checks.append(
            SmokeCheck("latency", ok,
                       f"single-row p{LATENCY_QUANTILE} {latency:.3f} ms of CPU {relation} max {max_latency_ms:g} ms")
        )
    return SmokeReport(model.version, tuple(checks), None if latency is None else round(latency, 4))
