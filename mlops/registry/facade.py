"""MLflow adapter: tracking runs, model registration with lineage, aliases, trusted model loading.

Everything MLflow-specific stays in this package; the rest of the project sees `ModelRef` and plain
values. `Registry` is the one handle callers use: a facade over run tracking, version lookup, model
artifacts and the audit log, each in its own module. Clients are built on demand from an explicit
tracking URI (never from import-time globals).
"""

from __future__ import annotations

from mlops.config import Settings
from mlops.registry.artifacts import ModelArtifacts
from mlops.registry.audit_log import AuditLog
from mlops.registry.tracking import RunTracking
from mlops.registry.versions import VersionLookup


class Registry(AuditLog, ModelArtifacts, RunTracking, VersionLookup):
    """A handle on one MLflow tracking server / store and its model registry."""


def open_registry(settings: Settings | None = None) -> Registry:
    """The registry flows and the CLI talk to: MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    settings = settings or Settings()
    return Registry(
        settings.mlflow_tracking_uri or settings.default_tracking_uri(),
        artifact_root=settings.default_artifact_root(),
    )
