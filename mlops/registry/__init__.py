"""The MLflow adapter behind one facade (`Registry`), and the alias rules as pure plans."""

from mlops.registry.aliases import (
    ALIAS_CHALLENGER,
    ALIAS_CHAMPION,
    ALIAS_PREVIOUS_CHAMPION,
    ALIAS_ROLLED_BACK,
    ALIAS_STAGING,
    AliasMove,
    AliasPlan,
    plan_promotion,
    plan_rollback,
)
from mlops.registry.artifacts import (
    CONTRACT_FILE,
    MODEL_ARTIFACT_NAME,
    PROFILE_ARTIFACT,
    REFERENCE_ARTIFACT,
    SKOPS_FILE,
)
from mlops.registry.client import ModelRef
from mlops.registry.facade import Registry, open_registry

__all__ = [
    "ALIAS_CHALLENGER",
    "ALIAS_CHAMPION",
    "ALIAS_PREVIOUS_CHAMPION",
    "ALIAS_ROLLED_BACK",
    "ALIAS_STAGING",
    "CONTRACT_FILE",
    "MODEL_ARTIFACT_NAME",
    "PROFILE_ARTIFACT",
    "REFERENCE_ARTIFACT",
    "SKOPS_FILE",
    "AliasMove",
    "AliasPlan",
    "ModelRef",
    "Registry",
    "open_registry",
    "plan_promotion",
    "plan_rollback",
]
