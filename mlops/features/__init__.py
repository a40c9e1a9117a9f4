"""The feature store (Feast): apply the repository, materialize, status, point-in-time training frames,
batched online lookups.

`store` is the Feast adapter and the only module that imports feast; `status` is plain data.
"""

from mlops.features.status import ViewStatus, render_markdown
from mlops.features.store import (
    ENTITY_TIMESTAMP,
    ROW_MISSING_FEATURE,
    ROW_OK,
    ROW_STALE,
    ROW_UNKNOWN_ENTITY,
    OnlineFeatures,
    RowStatus,
    ServiceSchema,
    apply_repo,
    describe_service,
    historical_frame,
    load_config,
    load_definitions,
    materialize,
    online_features,
    open_store,
    status,
)

__all__ = [
    "ENTITY_TIMESTAMP",
    "ROW_MISSING_FEATURE",
    "ROW_OK",
    "ROW_STALE",
    "ROW_UNKNOWN_ENTITY",
    "OnlineFeatures",
    "RowStatus",
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
    "status",
]
