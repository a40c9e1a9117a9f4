"""Steps of the materialize flow: load the online store from the offline sources, report per view."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops import features
from mlops.features import ViewStatus
from tasks import io_task_options

# The materialize flow's status, one artifact key so the Prefect UI keeps its history in one place.
STATUS_ARTIFACT_KEY = "materialize-features"


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
