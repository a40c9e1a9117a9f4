"""Model artifacts: registration with its contract, trusted (skops) loading, reference data, signature."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops.contract import DataContract
from mlops.errors import RegistryError
from mlops.registry.aliases import ALIAS_CHALLENGER, ALIAS_CHAMPION
from mlops.registry.client import ModelRef, tag_value
from mlops.registry.versions import VersionLookup

if TYPE_CHECKING:
    from mlops.drift import ReferenceProfile

CONTRACT_FILE = "contract.json"
# A seeded sample of the training data, logged with the run: the drift monitor's reference.
REFERENCE_ARTIFACT = "reference/reference.parquet"
# The drift reference profile computed from that sample (mlops.drift.profile): what checks read.
PROFILE_ARTIFACT = "reference/profile.npz"
MODEL_ARTIFACT_NAME = "model"
SKOPS_FILE = "model.skops"


class ModelArtifacts(VersionLookup):
    """What is stored with a version: the skops model, its contract, signature and reference data."""

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
        description: str | None = None,
    ) -> ModelRef:
        """Log the fitted pipeline (skops, signature, example, contract) and register it.

        `description` (the config's `card.purpose`) is the registered model's description in
        MLflow's UI, kept up to date with the config by every registration.

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
        experiment_id = self.client.get_run(run_id).info.experiment_id
        with tempfile.TemporaryDirectory() as tmp, _fluent_uri(self.tracking_uri, experiment_id):
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
                self.client.create_registered_model(model_name, description=description)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                if description is not None and self.client.get_registered_model(model_name).description != description:
                    self.client.update_registered_model(model_name, description=description)
            version = self.client.create_model_version(
                model_name,
                source=info.model_uri,
                run_id=run_id,
                tags={k: tag_value(v) for k, v in tags.items()},
                model_id=info.model_id,
            )
            try:
                self.client.set_registered_model_alias(model_name, alias, version.version)
            except Exception:
                self.client.delete_model_version(model_name, version.version)
                raise
        return self.get_version(model_name, str(version.version))

    def log_reference(self, run_id: str, sample: pd.DataFrame, profile: bytes | None = None) -> None:
        """The reference sample and, when given, its drift profile (a .npz payload)."""
        from mlops.data import serialize_frame

        folder, name = REFERENCE_ARTIFACT.rsplit("/", 1)
        files = {name: serialize_frame(sample)}
        if profile is not None:
            files[PROFILE_ARTIFACT.rsplit("/", 1)[1]] = profile
        self.log_files(run_id, files, folder)

    def _download(self, ref: ModelRef, artifact: str, what: str) -> bytes:
        if not ref.run_id:
            raise RegistryError(f"model {ref.name} v{ref.version} has no training run")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(ref.run_id, artifact, tmp)
            except Exception as err:  # MLflow raises several types for "not there"
                raise RegistryError(f"model {ref.name} v{ref.version} has no stored {what} ({artifact})") from err
            return Path(path).read_bytes()

    def load_reference(self, ref: ModelRef) -> pd.DataFrame:
        """The reference sample of training data logged with the version's run (for drift checks)."""
        import io

        return pd.read_parquet(io.BytesIO(self._download(ref, REFERENCE_ARTIFACT, "reference data")))

    def load_reference_profile(self, ref: ModelRef) -> ReferenceProfile | None:
        """The version's drift profile; None for versions trained before profiles were stored."""
        from mlops.drift import ReferenceProfile

        try:
            payload = self._download(ref, PROFILE_ARTIFACT, "drift profile")
        except RegistryError:
            return None
        return ReferenceProfile.load(payload, name=f"{ref.uri} {PROFILE_ARTIFACT}")

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
            try:
                found = skops.io.get_untrusted_types(file=path)
            except Exception as err:  # a truncated or overwritten file: zip, JSON or schema errors
                raise RegistryError(
                    f"refusing to load {name} v{ref.version}: {SKOPS_FILE} is not a readable skops file "
                    f"({type(err).__name__})"
                ) from None
            try:
                trusted = vet_trusted_types(found)
            except ValueError as err:
                raise RegistryError(f"refusing to load {name} v{ref.version}: {err}") from None
            return skops.io.load(path, trusted=trusted)


    def load_signature_and_example(self, ref: ModelRef) -> tuple[tuple[str, ...] | None, pd.DataFrame | None]:
        """The logged input signature's column names and the stored input example, as serving sees them."""
        from mlflow.models import Model

        with tempfile.TemporaryDirectory() as tmp:
            path = self._download_model(ref, tmp)
            model = Model.load(str(path / "MLmodel"))
            columns = None
            if model.signature is not None and model.signature.inputs is not None:
                columns = tuple(model.signature.inputs.input_names())
            try:
                example = model.load_input_example(str(path))
            except FileNotFoundError:
                example = None
        if example is not None and not isinstance(example, pd.DataFrame):
            example = pd.DataFrame(example)
        return columns, example


@contextmanager
def _fluent_uri(uri: str, experiment_id: str | None = None) -> Iterator[None]:
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
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if experiment_id is not None:
        # Logged models land in the fluent "current" experiment, not the run's, unless told.
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
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
