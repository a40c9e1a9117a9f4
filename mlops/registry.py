"""MLflow adapter: tracking runs, model registration with lineage, aliases, trusted model loading.

Everything MLflow-specific stays here; the rest of the project sees `ModelRef` and plain values.
Clients are built on demand from an explicit tracking URI (never from import-time globals).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.contract import DataContract
from mlops.errors import RegistryError

ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"
CONTRACT_FILE = "contract.json"
MODEL_ARTIFACT_NAME = "model"
SKOPS_FILE = "model.skops"
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


def _quiet_mlflow() -> None:
    # Progress bars on stderr would interleave with the CLI's one-line errors and JSON.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3] + "..."


class Registry:
    """A handle on one MLflow tracking server / store and its model registry."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None) -> None:
        _quiet_mlflow()
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # -- runs ---------------------------------------------------------------------------------

    def ensure_experiment(self, name: str) -> str:
        """Return the experiment id, creating it (with local artifacts for embedded stores)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = None
        if self.artifact_root is not None and not self.tracking_uri.startswith(("http://", "https://")):
            location = (self.artifact_root / name).resolve().as_uri()
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:
            # Another run created it between our lookup and create.
            return self.client.get_experiment_by_name(name).experiment_id

    def start_run(self, experiment: str, run_name: str, tags: Mapping[str, Any]) -> str:
        experiment_id = self.ensure_experiment(experiment)
        run = self.client.create_run(
            experiment_id, run_name=run_name, tags={k: _text(v) for k, v in tags.items()}
        )
        return run.info.run_id

    def end_run(self, run_id: str, succeeded: bool) -> None:
        self.client.set_terminated(run_id, status="FINISHED" if succeeded else "FAILED")

    def set_run_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, _text(value))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, _text(v)) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
        )

    def log_json(self, run_id: str, payload: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(payload, indent=2, default=str), artifact_file)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_files(self, run_id: str, files: Mapping[str, bytes], directory: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, payload in files.items():
                (Path(tmp) / name).write_bytes(payload)
            self.client.log_artifacts(run_id, tmp, artifact_path=directory)

    def run_url(self, run_id: str) -> str | None:
        """Link to the run in the MLflow UI, when the store is a server with a UI."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        run = self.client.get_run(run_id)
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def version_url(self, ref: ModelRef) -> str | None:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/models/{ref.name}/versions/{ref.version}"

    # -- registry ----------------------------------------------------------------------------

    def _ref(self, version: Any) -> ModelRef:
        return ModelRef(
            name=version.name,
            version=str(version.version),
            run_id=version.run_id,
            source=version.source,
            aliases=tuple(getattr(version, "aliases", ()) or ()),
            tags=dict(version.tags or {}),
        )

    def get_version(self, name: str, version: str) -> ModelRef:
        return self._ref(self.client.get_model_version(name, version))

    def version_by_alias(self, name: str, alias: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._ref(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def list_versions(self, name: str) -> list[ModelRef]:
        versions = self.client.search_model_versions(f"name = '{name}'")
        return sorted((self._ref(v) for v in versions), key=lambda r: int(r.version))

    def reference_version(self, name: str) -> ModelRef | None:
        """The version whose contract new data must meet: the champion, else the latest."""
        champion = self.version_by_alias(name, ALIAS_CHAMPION)
        if champion is not None:
            return champion
        versions = self.list_versions(name)
        return versions[-1] if versions else None

    def contract_for(self, name: str) -> tuple[DataContract | None, str]:
        """The stored contract new data for `name` must meet, and where it came from."""
        ref = self.reference_version(name)
        if ref is None:
            return None, "none"
        which = ALIAS_CHAMPION if ALIAS_CHAMPION in ref.aliases else "latest"
        return self.load_contract(ref), f"{which} v{ref.version}"

    def _download_model(self, ref: ModelRef, dst: str) -> Path:
        import mlflow.artifacts

        # `models:/` URIs are resolved through the fluent registry URI, not the argument.
        with _fluent_uri(self.tracking_uri):
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=ref.uri, dst_path=dst, tracking_uri=self.tracking_uri
                )
            )

    def load_contract(self, ref: ModelRef) -> DataContract:
        """The data contract stored inside the model artifact at training time."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self._download_model(ref, tmp) / "extra_files" / CONTRACT_FILE
            if not path.exists():
                raise RegistryError(f"model {ref.name} v{ref.version} has no stored data contract")
            return DataContract.from_json(path.read_text())

    def register_model(
        self,
        run_id: str,
        model_name: str,
        pipeline: Any,
        contract: DataContract,
        input_example: pd.DataFrame,
        trusted_types: list[str],
        tags: Mapping[str, Any],
        alias: str = ALIAS_CHALLENGER,
    ) -> ModelRef:
        """Log the fitted pipeline (skops, signature, example, contract) and register it.

        Registration is all-or-nothing: if tagging or aliasing fails, the new version is deleted
        again so no half-registered version is left behind.
        """
        import mlflow
        import mlflow.sklearn
        from mlflow.exceptions import MlflowException
        from mlflow.models import infer_signature

        # A retried call must not register the same run twice.
        for existing in self.client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'"):
            self.client.set_registered_model_alias(model_name, alias, existing.version)
            return self.get_version(model_name, str(existing.version))
        signature = infer_signature(input_example, pipeline.predict(input_example))
        # MLflow resolves `models:/m-...` sources through the fluent globals even inside
        # MlflowClient calls, so the whole registration runs with them pointed at our store.
        with tempfile.TemporaryDirectory() as tmp, _fluent_uri(self.tracking_uri):
            contract_path = Path(tmp) / CONTRACT_FILE
            contract_path.write_text(contract.to_json())
            info = mlflow.sklearn.log_model(
                pipeline,
                name=MODEL_ARTIFACT_NAME,
                run_id=run_id,
                signature=signature,
                input_example=input_example,
                serialization_format="skops",
                skops_trusted_types=trusted_types,
                extra_files=[str(contract_path)],
                # Explicit requirements skip MLflow's slow import-tracing subprocess.
                pip_requirements=_pip_requirements(),
            )
            try:
                self.client.create_registered_model(model_name)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            version = self.client.create_model_version(
                model_name,
                source=info.model_uri,
                run_id=run_id,
                tags={k: _text(v) for k, v in tags.items()},
                model_id=info.model_id,
            )
            try:
                self.client.set_registered_model_alias(model_name, alias, version.version)
            except Exception:
                self.client.delete_model_version(model_name, version.version)
                raise
        return self.get_version(model_name, str(version.version))

    def load_model(self, name: str, alias_or_version: str) -> Any:
        """Load a registered pipeline through skops with our vetted type allow-list.

        The allow-list is ours, not the one written in the artifact's MLmodel file, so a
        tampered artifact that smuggles in another type is refused instead of executed.
        """
        from mlops.training import vet_trusted_types

        ref = (
            self.get_version(name, alias_or_version)
            if alias_or_version.isdigit()
            else self.version_by_alias(name, alias_or_version)
        )
        if ref is None:
            raise RegistryError(f"model {name} has no version with alias '{alias_or_version}'")
        import skops.io

        with tempfile.TemporaryDirectory() as tmp:
            path = self._download_model(ref, tmp) / SKOPS_FILE
            if not path.exists():
                raise RegistryError(f"model {name} v{ref.version} is not a skops artifact; refusing to load")
            found = skops.io.get_untrusted_types(file=path)
            try:
                trusted = vet_trusted_types(found)
            except ValueError as err:
                raise RegistryError(f"refusing to load {name} v{ref.version}: {err}") from None
            return skops.io.load(path, trusted=trusted)


@contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-global fluent state at `uri` for one block, then restore it exactly.

    `log_model` and `models:/` resolution only speak the fluent globals, and
    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI into
    os.environ. Leaving either behind would silently redirect every other client in the process
    (later runs, tests, the serving app) to this store, so both are put back as they were.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    saved_globals = (tracking_state._tracking_uri, registry_state._registry_uri)
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        tracking_state._tracking_uri, registry_state._registry_uri = saved_globals
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pip_requirements() -> list[str]:
    from importlib import metadata

    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]
