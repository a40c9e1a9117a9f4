"""Steps of the monitor flow: load the champion's reference, read the window, check it, report it."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mlops import data, monitoring
from mlops.config import PipelineConfig
from mlops.contract import DataContract
from mlops.drift import DriftReport, ReferenceProfile
from mlops.registry import ModelRef, Registry
from tasks import io_task_options

_IO = io_task_options()


@task(name="load-champion", **_IO)
def load_champion(
    registry: Registry, name: str
) -> tuple[ModelRef, Any, DataContract, pd.DataFrame, ReferenceProfile | None]:
    """The champion version, its model, its contract, its reference sample and drift profile (if stored)."""
    ref = registry.require_alias(name, "champion")
    return (
        ref, registry.load_model(name, ref.version), registry.load_contract(ref),
        registry.load_reference(ref), registry.load_reference_profile(ref),
    )


@task(name="read-window", **_IO)
def read_window(
    config: PipelineConfig, contract: DataContract, current_uri: str | None, window_hours: float,
    window_start: datetime | None = None,
) -> tuple[pd.DataFrame, monitoring.Window]:
    """The data to check: a dataset URI when given, else the prediction log's recent window.

    Log part files that cannot be parsed are skipped and named in the window (`unreadable_parts`).
    """
    if current_uri:
        return data.read_frame(current_uri), monitoring.Window(source=current_uri)
    from mlops.serving.prediction_log import (
        join_labels,
        model_log_uri,
        read_labels,
        read_prediction_log,
    )

    # Only this model's partition: other models' rows sharing the log never enter its window.
    log_uri = model_log_uri(config.serving.prediction_log_uri, config.model.name)
    window = monitoring.log_window(log_uri, window_hours, start=window_start)
    skipped: list[str] = []
    log = read_prediction_log(window.source, since=window.start, until=window.end, skipped=skipped)
    labelled = join_labels(log, read_labels(window.source, skipped=skipped, since=window.start))
    frame = monitoring.window_frame(log, labelled, contract)
    return frame, replace(window, unreadable_parts=tuple(dict.fromkeys(skipped)))


@task(name="count-dead-letters", **_IO)
def count_dead_letters(window: monitoring.Window) -> int:
    """Logged rows of the window that went to dead-letter files (0 when checking a dataset)."""
    if window.start is None:
        return 0
    from mlops.serving.prediction_log import count_dead_letters as count

    return count(window.source, since=window.start, until=window.end)


@task(name="check-drift", cache_policy=NO_CACHE)
def check_window(
    reference: pd.DataFrame, current: pd.DataFrame, contract: DataContract, model: Any,
    config: PipelineConfig, champion: ModelRef, html_path: Path, profile: ReferenceProfile | None = None,
) -> DriftReport:
    """Per-column drift on the full window (Evidently's decisions), prediction drift, live performance."""
    metrics = monitoring.champion_metrics(champion.tags)
    return monitoring.check_window(reference, current, contract, model, config, metrics, html_path, profile)


@task(name="log-monitoring-run", **_IO)
def log_monitoring_run(
    registry: Registry, config: PipelineConfig, champion: ModelRef, report: DriftReport,
    window: monitoring.Window, html_path: Path,
) -> tuple[str, str | None]:
    """Drift metrics into the monitoring experiment (a trend over time); the HTML report beside them."""
    run_id = registry.start_run(
        f"{config.model.name}-monitoring", "monitor",
        {"model_name": config.model.name, "champion_version": champion.version, "window": window.describe()},
    )
    registry.log_metrics(run_id, monitoring.monitoring_metrics(report))
    registry.log_json(run_id, report.to_dict(), "drift/report.json")
    registry.log_files(run_id, {"report.html": html_path.read_bytes()}, "drift")
    registry.end_run(run_id, True)
    return run_id, registry.run_url(run_id)


@task(name="publish-drift-report", cache_policy=NO_CACHE)
def publish_drift_report(
    report: DriftReport, window: monitoring.Window, run_url: str | None, dead_letter_rows: int = 0
) -> None:
    create_markdown_artifact(
        key="drift-report", markdown=monitoring.report_markdown(report, window, run_url, dead_letter_rows),
        description=report.summary(),
    )


@task(name="emit-breach-event", cache_policy=NO_CACHE)
def emit_breach_event(report: DriftReport, name: str, champion: ModelRef, window: monitoring.Window) -> str | None:
    """Announce a breach to Prefect (automations start retraining on it); nothing when all is well."""
    event = monitoring.breach_event(report, name, champion.version, window)
    if event is None:
        return None
    event_name, resource, payload = event
    emit_event(event=event_name, resource=resource, payload=payload)
    return event_name


def html_report_path() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlops-drift-")) / "report.html"
