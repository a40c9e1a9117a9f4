"""The feature store (Feast): apply the repository, materialize, status, freshness, point-in-time training frames.

`store` is the Feast adapter and the only module that imports feast; `status` and `freshness` are plain data.
"""

from mlops.features.freshness import STALENESS_TAG, Freshness, FreshnessReport
from mlops.features.status import ViewStatus, render_markdown
from mlops.features.store import (
    ENTITY_TIMESTAMP,
    ServiceLineage,
    apply_repo,
    historical_frame,
    load_config,
    load_definitions,
    materialize,
    open_store,
    service_lineage,
    service_views,
    status,
    view_freshness,
    view_version,
)

__all__ = [
    "ENTITY_TIMESTAMP",
    "STALENESS_TAG",
    "Freshness",
    "FreshnessReport",
    "ServiceLineage",
    "ViewStatus",
    "apply_repo",
    "historical_frame",
    "load_config",
    "load_definitions",
    "materialize",
    "open_store",
    "render_markdown",
    "service_lineage",
    "service_views",
    "status",
    "view_freshness",
    "view_version",
]
