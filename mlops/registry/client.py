"""The MLflow handle every part of the registry shares, the `ModelRef` the project sees, tag values."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.lineage import redact_uri

# MLflow caps a tag value at 5000 characters (8000 for params); stay well below.
_MAX_TAG = 4000


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, as the rest of the project sees it."""

    name: str
    version: str
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


# MLflow loads every `mlflow.request_header_provider` entry point on its first request. Feast
# registers one, so every process that talks to MLflow imported all of Feast (about 10 s on this
# 2-core machine: every CLI call, every flow run, the serving app). It only adds a bearer token
# from MLFLOW_TRACKING_TOKEN, which MLflow's own client already sends, or from a Kubernetes
# service-account file, which this project never wants sent to its tracking server.
_SKIPPED_HEADER_PROVIDERS = ("feast.",)
_HEADER_REGISTRY = "mlflow.tracking.request_header.registry"


def _load_header_providers_without_feast() -> None:
    """Import MLflow's request-header registry once, leaving out the providers we never use."""
    if _HEADER_REGISTRY in sys.modules:
        return
    from mlflow.utils import plugins

    everything = plugins.get_entry_points

    def wanted(group: str) -> list[Any]:
        found = everything(group)
        if group != "mlflow.request_header_provider":
            return found
        return [ep for ep in found if not ep.value.startswith(_SKIPPED_HEADER_PROVIDERS)]

    # The registry binds get_entry_points by name and registers at import: swap it for that import only.
    plugins.get_entry_points = wanted
    try:
        __import__(_HEADER_REGISTRY)
    finally:
        plugins.get_entry_points = everything


def _quiet_mlflow() -> None:
    # Progress bars on stderr would interleave with the CLI's one-line errors and JSON.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _load_header_providers_without_feast()


def tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3] + "..."


class MlflowHandle:
    """One MLflow tracking server / store and its model registry, as every registry part reads it."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        _quiet_mlflow()
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _is_server(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def _ui_base(self) -> str:
        # Links land in summaries, artifacts and logs: a user:password@ in the URI must not.
        return redact_uri(self.tracking_uri).rstrip("/")
