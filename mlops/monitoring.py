"""What one monitoring check does, as pure steps: pick the window, score it, judge it, describe it.

The drift decisions come from `mlops.drift.check_drift` on every row of the window, against the
reference profile stored with the model; Evidently's HTML report is drawn from a seeded sample.
This module decides which columns are watched, adds prediction drift and live performance, and
shapes the event a breach emits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mlops import drift, events, training
from mlops.config import PipelineConfig
from mlops.contract import DataContract
from mlops.drift import FrameWindow, ReferenceProfile, profile_frame
from mlops.metrics import Predictions, higher_is_better, predict, score_predictions
from mlops.serving import prediction_log
from mlops.serving.metrics import ROUTE_SHADOW

PREDICTION_COLUMN = "prediction"


@dataclass(frozen=True)
class Window:
    """The slice of traffic (or the dataset) a check looked at."""

    source: str
    start: datetime | None = None
    end: datetime | None = None
    # Prediction-log part files that could not be parsed and so were left out of the window.
    unreadable_parts: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.start is None:
            return self.source
        return f"{self.source} [{self.start.isoformat()} .. {self.end.isoformat() if self.end else 'now'})"


def log_window(log_uri: str, hours: float, now: datetime | None = None, start: datetime | None = None) -> Window:
    """The last `hours` of the prediction log, ending now (UTC); from `start` instead, when given.

    A window anchored at a known moment (the demo's drifted traffic) does not depend on how long
    the run waited for a worker: "the last N minutes" measured from the run's start missed it.
    """
    end = now or datetime.now(UTC)
    if start is not None:
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        return Window(source=log_uri, start=min(start, end), end=end)
    return Window(source=log_uri, start=end - timedelta(hours=hours), end=end)


def features_from_log(log: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The contract's feature columns out of a prediction-log frame (which prefixes reserved names)."""
    return prediction_log.features_from_log(log, contract.feature_names)


def window_frame(log: pd.DataFrame, labelled: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The rows a check judges, out of the prediction log's window: the contract's features, the
    prediction the caller got, and the label sent later for that row (NaN for rows without one).

    Shadow rows are left out: they are the challenger's silent scorings of requests the champion
    answered, so keeping them would count those requests twice and mix another model's predictions
    into the champion's prediction drift. Labels are joined on (request_id, row).
    """
    log = log[log["route"] != ROUTE_SHADOW] if "route" in log.columns else log
    frame = features_from_log(log, contract) if len(log) else pd.DataFrame(columns=contract.feature_names)
    frame[PREDICTION_COLUMN] = log["prediction"].to_numpy() if len(log) else []
    if len(labelled):
        keyed = labelled.set_index(["request_id", "row"])["label"]
        index = pd.MultiIndex.from_arrays([log["request_id"], log["row"]])
        frame[contract.target] = keyed.reindex(index).to_numpy()
    return frame


def monitored_columns(contract: DataContract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features the drift check compares."""
    return contract.numeric_features, contract.categorical_features


def with_predictions(frame: pd.DataFrame, model: Any, contract: DataContract) -> pd.DataFrame:
    """The frame plus the champion's prediction for each row (for prediction drift)."""
    out = frame.copy()
    out[PREDICTION_COLUMN] = model.predict(training.feature_frame(frame, contract))
    return out


def _prediction_is_numeric(contract: DataContract) -> bool:
    return contract.task == "regression"


def live_performance(
    truth: pd.Series, predictions: Predictions, contract: DataContract,
    champion_metrics: dict[str, float], metric: str, max_drop: float,
) -> drift.PerformanceDrift | None:
    """The champion's metric on labelled live rows against its evaluation metric; None if unknown.

    Scored by `mlops.metrics` exactly as the quality gate and the promotion decision score a model.
    """
    if metric not in champion_metrics or len(truth) == 0:
        return None
    live = score_predictions(contract.task, truth.to_numpy(), predictions)
    if metric not in live:
        return None
    return drift.PerformanceDrift(
        metric=metric,
        reference=float(champion_metrics[metric]),
        current=float(live[metric]),
        higher_is_better=higher_is_better(metric),
        max_drop=max_drop,
    )


def drift_columns(contract: DataContract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns of a check: the features plus the model's prediction."""
    numeric, categorical = monitored_columns(contract)
    if _prediction_is_numeric(contract):
        return [*numeric, PREDICTION_COLUMN], categorical
    return numeric, [*categorical, PREDICTION_COLUMN]


def _scored(frame: pd.DataFrame, model: Any, contract: DataContract) -> pd.DataFrame:
    """The frame with a prediction column, as strings for classifiers (a categorical column)."""
    out = frame if PREDICTION_COLUMN in frame.columns else with_predictions(frame, model, contract)
    if not _prediction_is_numeric(contract):
        out = out.assign(**{PREDICTION_COLUMN: out[PREDICTION_COLUMN].astype(str)})
    return out


def reference_profile(reference: pd.DataFrame, model: Any, contract: DataContract) -> ReferenceProfile:
    """What every later check compares against, computed once: features and the model's predictions."""
    numeric, categorical = drift_columns(contract)
    return profile_frame(_scored(reference, model, contract), numeric, categorical)


def check_window(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DataContract,
    model: Any,
    config: PipelineConfig,
    champion_metrics: dict[str, float],
    html_path: Path | None = None,
    profile: ReferenceProfile | None = None,
) -> drift.DriftReport:
    """Data drift, prediction drift and (when labels exist) live performance for one window.

    Decisions use every row of `current`; without a stored `profile` (a model trained before
    profiles existed) one is built from `reference` now. The HTML report uses a seeded sample.
    """
    numeric, categorical = drift_columns(contract)
    profile = profile or reference_profile(reference, model, contract)
    cur = _scored(current, model, contract)
    report = drift.check_drift(profile, FrameWindow(cur), numeric, categorical, config.monitoring)
    details = dict(report.details)
    if html_path is not None:
        ref_sample = drift.reference_sample(reference, config.monitoring.report_sample_rows, config.monitoring.seed)
        details["html_sample"] = drift.sample_html_report(
            _scored(ref_sample, model, contract), cur, numeric, categorical, config.monitoring, html_path
        )
        details["html_sample"]["of_reference"] = len(reference)
    columns = tuple(c for c in report.columns if c.column != PREDICTION_COLUMN)
    prediction = next((c for c in report.columns if c.column == PREDICTION_COLUMN), None)
    # The dataset verdict is about the input features; prediction drift is reported beside it.
    drifted = sum(c.drifted for c in columns)
    share = drifted / len(columns) if columns else 0.0
    performance = None
    if contract.target in current.columns and current[contract.target].notna().any():
        labelled = current[current[contract.target].notna()]
        predictions = predict(model, training.feature_frame(labelled, contract), contract.task)
        performance = live_performance(
            labelled[contract.target], predictions, contract, champion_metrics,
            config.promotion.primary_metric, config.monitoring.max_performance_drop,
        )
    return replace(
        report,
        columns=columns,
        prediction=prediction,
        drift_share=share,
        dataset_drift=share >= config.monitoring.drift_share,
        performance=performance,
        details=details,
    )


def breach_event(
    report: drift.DriftReport, model_name: str, champion_version: str, window: Window
) -> tuple[str, dict[str, str], dict[str, Any]] | None:
    """(event name, resource, payload) for a breach, or None when nothing crossed a threshold."""
    if not report.breach:
        return None
    name = events.DRIFT_DETECTED if report.dataset_drift else events.PERFORMANCE_DEGRADED
    payload: dict[str, Any] = {
        "model_name": model_name,
        "champion_version": champion_version,
        "dataset_drift": report.dataset_drift,
        "drift_share": round(report.drift_share, 6),
        "drifted_columns": [c.column for c in report.drifted_columns],
        "window": window.describe(),
        "report_location": report.report_location,
        "rows_current": report.rows_current,
    }
    if report.performance is not None:
        p = report.performance
        payload["performance"] = {"metric": p.metric, "reference": p.reference, "current": p.current, "degraded": p.degraded}
    return name, events.model_resource(model_name), json.loads(json.dumps(payload, default=str))


def monitoring_metrics(report: drift.DriftReport) -> dict[str, float]:
    """Numbers logged to the monitoring experiment so their trend can be plotted over time."""
    metrics = {
        "drift_share": report.drift_share,
        "drifted_columns": float(len(report.drifted_columns)),
        "dataset_drift": float(report.dataset_drift),
        "rows_current": float(report.rows_current),
    }
    metrics.update({f"drift.{c.column}": c.statistic for c in report.columns})
    if report.prediction is not None:
        metrics["drift.prediction"] = report.prediction.statistic
    if report.performance is not None:
        metrics[f"live.{report.performance.metric}"] = report.performance.current
    return metrics


def champion_metrics(tags: dict[str, str] | Any) -> dict[str, float]:
    """The champion's holdout metrics as recorded on its version at training time."""
    try:
        raw = json.loads(tags.get("metrics", "{}"))
    except (TypeError, ValueError):
        return {}
    return {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}


def report_markdown(report: drift.DriftReport, window: Window, run_url: str | None, dead_letter_rows: int = 0) -> str:
    """The drift check for the Prefect UI: verdict, per-column table, link to the full report."""
    lines = [
        f"# Drift check: {'BREACH' if report.breach else 'ok'}",
        "",
        f"- **Window**: {window.describe()} ({report.rows_current} rows; reference {report.rows_reference})",
        f"- **Verdict**: {report.summary()}",
        f"- **Dead-lettered log rows**: {dead_letter_rows} (logged rows the serving app could not store; not in the check)",
    ]
    if window.unreadable_parts:
        lines.append(f"- **Unreadable log parts skipped** ({len(window.unreadable_parts)}): "
                     + ", ".join(f"`{p}`" for p in window.unreadable_parts))
    if run_url:
        lines.append(f"- **Evidently report and metrics**: [{run_url}]({run_url})")
    lines += ["", "| column | method | statistic | threshold | drifted |", "|---|---|---|---|---|"]
    rows = [*report.columns, *([report.prediction] if report.prediction else [])]
    for c in sorted(rows, key=lambda c: (not c.drifted, c.column)):
        lines.append(f"| {c.column} | {c.method} | {c.statistic:.4f} | {c.threshold} | {'yes' if c.drifted else 'no'} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MonitorResult:
    """What one `monitor` run found; printed by `mlops monitor --json`."""

    status: str
    model_name: str
    champion_version: str
    window: str
    rows: int
    dataset_drift: bool = False
    drift_share: float = 0.0
    drifted_columns: tuple[str, ...] = ()
    prediction_drift: bool = False
    performance: dict[str, Any] | None = None
    report_location: str | None = None
    run_id: str | None = None
    event: str | None = None
    unreadable_parts: tuple[str, ...] = ()
    # Rows of the window the serving app sent to dead-letter files instead of the log.
    dead_letter_rows: int = 0
    # A store-fed model (dataset.feature_service): its views' freshness (FreshnessReport.to_dict()).
    feature_freshness: dict[str, Any] | None = None

    @classmethod
    def from_report(
        cls, report: drift.DriftReport, model_name: str, version: str, window: str, run_id: str, event: str | None,
        unreadable_parts: tuple[str, ...] = (),
        dead_letter_rows: int = 0,
        feature_freshness: dict[str, Any] | None = None,
    ) -> MonitorResult:
        perf = report.performance
        return cls(
            unreadable_parts=unreadable_parts,
            status="breach" if report.breach else "ok",
            model_name=model_name,
            champion_version=version,
            window=window,
            rows=report.rows_current,
            dataset_drift=report.dataset_drift,
            drift_share=report.drift_share,
            drifted_columns=tuple(c.column for c in report.drifted_columns),
            prediction_drift=bool(report.prediction and report.prediction.drifted),
            performance=None if perf is None else {
                "metric": perf.metric, "reference": perf.reference, "current": perf.current, "degraded": perf.degraded,
            },
            report_location=report.report_location,
            run_id=run_id,
            event=event,
            dead_letter_rows=dead_letter_rows,
            feature_freshness=feature_freshness,
        )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["event_emitted"] = self.event is not None
        out["unreadable_part_count"] = len(self.unreadable_parts)
        return out
