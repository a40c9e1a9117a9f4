"""Domain exceptions, each carrying the CLI exit code documented in the README.

Flows raise these so a run ends Failed with a readable message; the CLI maps them to exit codes.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base of every expected, explainable failure; `str(err)` is the one readable line."""

    exit_code = 1
    # Whether trying again later may succeed: Prefect's I/O tasks retry only these MlopsErrors.
    transient = False


class ConfigError(MlopsError):
    """The pipeline config file is missing, malformed or names something that does not exist."""

    exit_code = 2


class DataError(MlopsError):
    """A dataset cannot be read: missing file, unsupported format, empty, undecodable."""

    exit_code = 2


class StorageUnavailable(MlopsError):
    """The storage endpoint (S3) could not be reached or was too busy; a later attempt may succeed."""

    exit_code = 1
    transient = True


class DataValidationFailed(MlopsError):
    """The data broke its expectation suite; nothing may be trained on it."""

    exit_code = 3

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class QualityGateFailed(MlopsError):
    """The trained model missed a configured minimum metric; it must not be registered."""

    exit_code = 4

    def __init__(self, message: str, gate_results: object | None = None) -> None:
        super().__init__(message)
        self.gate_results = gate_results


class RegistryError(MlopsError):
    """The model registry refused an operation or is unreachable."""

    exit_code = 1


class ModelNotFound(MlopsError):
    """A named model, version or alias does not exist, so there is nothing to deploy or roll back to."""

    exit_code = 2


class PromotionRefused(MlopsError):
    """The challenger did not replace the champion; the deploy run itself completed normally."""

    exit_code = 5


class NothingToApprove(MlopsError):
    """`mlops approve` / `reject` found no deploy of the model waiting for an answer (or several)."""

    exit_code = 2


class BrokenSplit(MlopsError, ValueError):
    """The registry's rollout tag is not a traffic split: serving routes to the champion only.

    A ValueError too, so callers that catch a malformed value catch it.
    """

    exit_code = 2


class ChampionMoved(PromotionRefused):
    """Another deploy moved `champion` after this one compared against it: its verdict is stale."""


class FeatureStoreUnavailable(MlopsError):
    """The feature store's registry or online store could not be reached; a later attempt may succeed."""

    exit_code = 1
    transient = True
