"""A config's training data: the one way every reader gets it (train, retrain, deploy's holdout).

A flat file is read as it is. With `dataset.feature_service`, `dataset.uri` is an entity frame
(join keys, the timestamp, the label) and the training frame is that frame joined point in time to
the service's features through the Feast adapter; the join keys identify rows and are dropped,
so a model never learns from a customer id and serving looks its features up by the same key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlops import data, features
from mlops.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from mlops.config import DatasetConfig

# Lineage tag names of a store-fed frame (beside lineage.lineage_tags' own).
TAG_FEATURE_SERVICE = "feature_service"
TAG_FEATURE_REPO = "feature_repo"
TAG_ENTITY_FINGERPRINT = "entity_fingerprint"
TAG_VIEW_PREFIX = "feature_view."


@dataclass(frozen=True)
class TrainingFrame:
    """The frame a run learns from, its content fingerprint, and where its features came from.

    `lineage` is empty for a flat file; for a store-fed frame it names the feature service, the
    repository, each feature view with its version and the entity frame's fingerprint (tags).
    """

    frame: pd.DataFrame
    fingerprint: str
    lineage: dict[str, str] = field(default_factory=dict)


def read_training_frame(dataset: DatasetConfig, home: str | Path) -> TrainingFrame:
    """The configured training data: the flat file, or the entity frame joined to its feature service.

    `home` is the stack's home (Settings.home), where the feature store keeps its registry.
    Errors are the adapter's: ConfigError for an unknown service or view, DataError for an entity
    frame without its timestamp or a join key, FeatureStoreUnavailable for a store out of reach.
    """
    frame = data.read_frame(dataset.uri)
    if not dataset.feature_service:
        return TrainingFrame(frame, data.fingerprint_frame(frame))
    if not dataset.timestamp:
        # The config already refuses this; a DatasetConfig built without validation must not join
        # every label to the latest values (the future).
        raise ConfigError("dataset.feature_service needs dataset.timestamp (each label's time for the join)")
    store = features.open_store(dataset.feature_repo, home)
    service = features.service_lineage(store, dataset.feature_service)
    joined = features.historical_frame(store, frame, dataset.feature_service, timestamp=dataset.timestamp)
    trained_on = joined.drop(columns=[key for key in service.join_keys if key != dataset.target])
    lineage = {
        TAG_FEATURE_SERVICE: service.name,
        TAG_FEATURE_REPO: dataset.feature_repo,
        TAG_ENTITY_FINGERPRINT: data.fingerprint_frame(frame),
        **{f"{TAG_VIEW_PREFIX}{name}": version for name, version in service.views.items()},
    }
    return TrainingFrame(trained_on, data.fingerprint_frame(trained_on), lineage)
