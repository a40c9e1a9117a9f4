"""The `monitor` flow: is the champion still looking at the data it was trained on?"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from prefect import flow, get_run_logger

from flows.states import completed_as_status
from mlops.catalogue import ConfigOverrides
from mlops.config import PipelineConfig
from mlops.drift import INSUFFICIENT_DATA, too_few_rows
from mlops.features import FreshnessReport
from mlops.monitoring import MonitorResult
from mlops.registry import open_registry
from mlops.settings import Settings
from tasks.catalogue import load_model_config
from tasks.features import check_feature_freshness, emit_stale_events, publish_feature_freshness
from tasks.monitoring import (
    check_window,
    count_dead_letters,
    emit_breach_event,
    html_report_path,
    load_champion,
    log_monitoring_run,
    publish_drift_report,
    read_window,
)


@flow(name="monitor", log_prints=True)
def monitor(
    config: PipelineConfig, current_uri: str | None = None, window_hours: float | None = None,
    window_start: datetime | None = None,
) -> MonitorResult:
    """Compare recent traffic (or a dataset) with the champion's training data, as Evidently would.

    Every row of the window is checked against the reference profile stored with the champion;
    the HTML report beside the run is Evidently's, drawn from a seeded sample of the window.

    On data drift or degraded live performance it emits `mlops.drift.detected` or
    `mlops.performance.degraded` for `mlops.model.<name>`, which the retrain automation listens to.
    No breach, no event. Too few rows in the window gives no verdict and no event. Prediction-log
    part files that cannot be parsed are skipped, logged and listed in the result.

    A model fed by a feature service (`dataset.feature_service`) also has its service's views
    checked against their staleness bounds: each stale one emits `mlops.features.stale`, and the
    check is in the result and the `feature-freshness` artifact. A store that cannot be read makes
    the freshness unknown (logged, in the result), not the drift check fail.

    Args:
        config: The pipeline config; `monitoring` sets methods, thresholds and the window.
        current_uri: Data to check instead of the prediction log (local path or s3://).
        window_hours: Hours of prediction log to check (default `monitoring.window_hours`).
        window_start: Check the prediction log from this time (UTC) until now, instead of `window_hours`.
    """
    logger = get_run_logger()
    registry = open_registry()
    champion, model, contract, reference, profile = load_champion(registry, config.model.name)
    freshness = _check_feature_freshness(config)
    hours = window_hours or config.monitoring.window_hours
    current, window = read_window(config, contract, current_uri, hours, window_start)
    if window.unreadable_parts:
        logger.warning(f"{len(window.unreadable_parts)} unreadable prediction-log part(s) skipped: "
                       + ", ".join(window.unreadable_parts))
    dead = count_dead_letters(window)
    if dead:
        logger.warning(f"{dead} logged rows in {window.describe()} went to dead-letter files, not into this check")
    no_verdict = too_few_rows(len(current), config.monitoring)
    if no_verdict is not None:
        logger.info(f"{window.describe()}: {no_verdict}")
        # Named NoVerdict in the runs list: a quiet window is not a window without drift.
        return completed_as_status(MonitorResult(
            status=INSUFFICIENT_DATA, model_name=config.model.name, champion_version=champion.version,
            window=window.describe(), rows=len(current), unreadable_parts=window.unreadable_parts,
            dead_letter_rows=dead, feature_freshness=freshness))

    html = html_report_path()
    report = check_window(reference, current, contract, model, config, champion, html, profile)
    run_id, run_url = log_monitoring_run(registry, config, champion, report, window, html)
    report = replace(report, report_location=run_url or f"runs:/{run_id}/drift/report.html")
    publish_drift_report(report, window, run_url, dead)
    event = emit_breach_event(report, config.model.name, champion, window)
    logger.info(f"{report.summary()}; dead-lettered log rows: {dead}")
    return MonitorResult.from_report(
        report, config.model.name, champion.version, window.describe(), run_id, event, window.unreadable_parts,
        dead_letter_rows=dead, feature_freshness=freshness,
    )


def _check_feature_freshness(config: PipelineConfig) -> dict | None:
    """The freshness of a store-fed model's feature views (None for a model on a flat file)."""
    service = config.dataset.feature_service
    if not service:
        return None
    checked = check_feature_freshness(
        config.dataset.feature_repo, Settings().home, feature_service=service, return_state=True
    )
    if checked.is_failed():
        # Stale features do not make drift unknowable: the drift check goes on, the gap is reported.
        report = FreshnessReport(feature_service=service, error=str(checked.result(raise_on_failure=False)))
    else:
        report = FreshnessReport(tuple(checked.result()), feature_service=service)
        emit_stale_events(list(report.views), "monitor", config.model.name)
    publish_feature_freshness(report)
    (get_run_logger().warning if report.error or report.stale else get_run_logger().info)(report.summary())
    return report.to_dict()


@flow(name="monitor", log_prints=True)
def monitor_model(
    model: str, overrides: ConfigOverrides | None = None, current_uri: str | None = None,
    window_hours: float | None = None, window_start: datetime | None = None,
) -> MonitorResult:
    """Check a catalogue model's live window for drift (the same run as `monitor`); each model's
    schedule (`monitoring.schedule`) starts this with its name.

    Args:
        model: The model: one of the catalogue's (configs/*.yaml) model names.
        overrides: Config keys to change for this run only; keys left empty keep the file's value.
        current_uri: Data to check instead of the prediction log (local path or s3://).
        window_hours: Hours of prediction log to check (default `monitoring.window_hours`).
        window_start: Check the prediction log from this time (UTC) until now, instead of `window_hours`.
    """
    resolved = load_model_config(model, overrides)
    return monitor.fn(config=resolved.config, current_uri=current_uri, window_hours=window_hours,
                      window_start=window_start)
