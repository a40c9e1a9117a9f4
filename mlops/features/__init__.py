"""The feature store (Feast): apply the repository, materialize, status, freshness, point-in-time training frames,
batched online lookups.

`store` is the Feast adapter and the only module that imports feast; `status` and `freshness` are plain data.
"""

from mlops.features.freshness import STALENESS_TAG, Freshness, FreshnessReport
from mlops.features.status import ViewStatus, render_markdown
from mlops.features.store import (
    ENTITY_TIMESTAMP,
    ROW_MISSING_FEATURE,
    ROW_OK,
    ROW_STALE,
    ROW_UNKNOWN_ENTITY,
    OnlineFeatures,
    RowStatus,
    ServiceLineage,
    ServiceSchema,
    apply_repo,
    describe_service,
    historical_frame,
    load_config,
    load_definitions,
    materialize,
    online_features,
    open_store,
    service_lineage,
    service_views,
    status,
    view_freshness,
    view_version,
)

__all__ = [
    "ENTITY_TIMESTAMP",
    "ROW_MISSING_FEATURE",
    "ROW_OK",
    "ROW_STALE",
    "ROW_UNKNOWN_ENTITY",
    "STALENESS_TAG",
    "Freshness",
    "FreshnessReport",
    "OnlineFeatures",
    "RowStatus",
    "ServiceLineage",
    "ServiceSchema",
    "ViewStatus",
    "apply_repo",
    "describe_service",
    "historical_frame",
    "load_config",
    "load_definitions",
    "materialize",
    "online_features",
    "open_store",
    "render_markdown",
    "service_lineage",
    "service_views",
    "status",
    "view_freshness",
    "view_version",
]
