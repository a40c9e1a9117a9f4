"""The `materialize` flow: bring the online feature store up to date, incrementally."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from mlops.features import FreshnessReport, ViewStatus
from mlops.settings import Settings
from tasks.features import (
    check_feature_freshness,
    emit_stale_events,
    materialize_features,
    publish_feature_freshness,
    publish_feature_status,
)


@flow(name="materialize", log_prints=True)
def materialize(repo: str = "features", views: list[str] | None = None) -> list[ViewStatus]:
    """Load each feature view's new rows (since its last materialization) into the online store.

    The first run of a view loads its whole history; later runs only what is newer. Publishes a
    markdown artifact with each view's last materialized time and rows written. A run that fails
    checks how old the views it was to load now are: each one past its staleness bound (tag
    `mlops.max_staleness_minutes`) or never materialized emits `mlops.features.stale`.

    Args:
        repo: The Feast repository (feature_store.yaml and definitions), relative to the working directory.
        views: The feature views to materialize; all of them when empty.
    """
    home = Settings().home
    state = materialize_features(repo, home, views or None, return_state=True)
    if state.is_failed():
        # Serving now answers from values as old as the last good run: say which views that
        # makes too old, then fail with the materialization's own error.
        _report_stale_views(repo, home, views or None)
        state.result()
    statuses = state.result()
    publish_feature_status(statuses)
    for status in statuses:
        print(f"{status.name}: {status.rows_written} rows, materialized to {status.last_materialized}")
    return statuses


def _report_stale_views(repo: str, home: Path, views: list[str] | None) -> None:
    logger = get_run_logger()
    checked = check_feature_freshness(repo, home, views, return_state=True)
    if checked.is_failed():
        # The registry itself may be what failed: the run's own error says so; nothing to announce.
        logger.warning(f"feature freshness unknown: {checked.result(raise_on_failure=False)}")
        return
    report = FreshnessReport(tuple(checked.result()))
    publish_feature_freshness(report)
    emit_stale_events(list(report.views), "materialize")
    logger.warning(report.summary())
