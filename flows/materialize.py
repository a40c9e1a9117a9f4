"""The `materialize` flow: bring the online feature store up to date, incrementally."""

from __future__ import annotations

from prefect import flow

from mlops.features import ViewStatus
from mlops.settings import Settings
from tasks.features import materialize_features, publish_feature_status


@flow(name="materialize", log_prints=True)
def materialize(repo: str = "features", views: list[str] | None = None) -> list[ViewStatus]:
    """Load each feature view's new rows (since its last materialization) into the online store.

    The first run of a view loads its whole history; later runs only what is newer. Publishes a
    markdown artifact with each view's last materialized time and rows written.

    Args:
        repo: The Feast repository (feature_store.yaml and definitions), relative to the working directory.
        views: The feature views to materialize; all of them when empty.
    """
    statuses = materialize_features(repo, Settings().home, views or None)
    publish_feature_status(statuses)
    for status in statuses:
        print(f"{status.name}: {status.rows_written} rows, materialized to {status.last_materialized}")
    return statuses
