"""Steps of the materialize flow: load the online store from the offline sources, report per view."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from mlops import events, features
from mlops.features import Freshness, FreshnessReport, ViewStatus
from mlops.features.freshness import render_markdown as freshness_markdown
from mlops.features.freshness import stale_views
from tasks import io_task_options

# The materialize flow's status, one artifact key so the Prefect UI keeps its history in one place.
STATUS_ARTIFACT_KEY = "materialize-features"
# The freshness check (materialize on failure, the monitor of a store-fed model).
FRESHNESS_ARTIFACT_KEY = "feature-freshness"


# Retried on an unreachable store only: Feast records a view's interval after it is written, so a
# retry resumes where the failed attempt stopped; a bad repository or view name fails at once.
@task(name="materialize-features", timeout_seconds=3600, **io_task_options(5, 30))
def materialize_features(repo: str, home: Path, views: list[str] | None) -> list[ViewStatus]:
    """Each view's rows newer than its last materialization into the online store."""
    return features.materialize(features.open_store(repo, home), views=views)


@task(name="publish-feature-status", cache_policy=NO_CACHE)
def publish_feature_status(statuses: list[ViewStatus]) -> None:
    """The per-view status (last materialized time, rows written, TTL) as a markdown artifact."""
    rows = sum(s.rows_written or 0 for s in statuses)
    create_markdown_artifact(
        key=STATUS_ARTIFACT_KEY,
        markdown=features.render_markdown(statuses),
        description=f"{len(statuses)} feature views, {rows} rows written",
    )


# One short retry: this runs after a failure (materialize) or beside the drift check (monitor),
# and an unreachable registry should be reported, not waited for.
@task(name="check-feature-freshness", timeout_seconds=300, **io_task_options(2))
def check_feature_freshness(
    repo: str, home: Path, views: list[str] | None = None, feature_service: str | None = None
) -> list[Freshness]:
    """Each view's age against its bound: the named views, a service's views, or all of them."""
    store = features.open_store(repo, home)
    if feature_service is not None:
        views = features.service_views(store, feature_service)
    return features.view_freshness(store, views)


@task(name="emit-stale-events", cache_policy=NO_CACHE)
def emit_stale_events(views: list[Freshness], source: str, model_name: str | None = None) -> list[str]:
    """One `mlops.features.stale` per stale view; nothing for fresh ones. Returns the stale views' names."""
    emitted = []
    for view in stale_views(views):
        name, resource, payload = events.stale_event(view, source, model_name)
        emit_event(event=name, resource=resource, payload=payload)
        emitted.append(view.view)
    return emitted


@task(name="publish-feature-freshness", cache_policy=NO_CACHE)
def publish_feature_freshness(report: FreshnessReport) -> None:
    """The freshness check as a markdown artifact: per view its age, bound and verdict."""
    create_markdown_artifact(
        key=FRESHNESS_ARTIFACT_KEY, markdown=freshness_markdown(report), description=report.summary(),
    )
