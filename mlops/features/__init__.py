"""The feature store (Feast): apply the repository, materialize, status, point-in-time training frames.

`store` is the Feast adapter and the only module that imports feast; `status` is plain data.
"""

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
    status,
    view_version,
)

__all__ = [
    "ENTITY_TIMESTAMP",
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
    "status",
    "view_version",
]
