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
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops.audit import AuditRecord, sort_records
from mlops.config import Settings
from mlops.contract import DataContract
from mlops.errors import ChampionMoved, ModelNotFound, RegistryError
from mlops.lineage import redact_uri

if TYPE_CHECKING:
    from mlops.drift import ReferenceProfile

ALIAS_CHAMPION = "champion"
ALIAS_CHALLENGER = "challenger"
ALIAS_STAGING = "staging"
ALIAS_PREVIOUS_CHAMPION = "previous-champion"
ALIAS_ROLLED_BACK = "rolled-back"
# The append-only audit log: one JSON file per record in a dedicated run of `<model>-audit`.
AUDIT_EXPERIMENT_SUFFIX = "-audit"
AUDIT_RUN_NAME = "audit-log"
AUDIT_RUN_TAG = "mlops.audit_log"
AUDIT_DIR = "audit"
CONTRACT_FILE = "contract.json"
# A seeded sample of the training data, logged with the run: the drift monitor's reference.
REFERENCE_ARTIFACT = "reference/reference.parquet"
# The drift reference profile computed from that sample (mlops.drift.profile): what checks read.
PROFILE_ARTIFACT = "reference/profile.npz"
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
        return f"{self._ui_base()}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def version_url(self, ref: ModelRef) -> str | None:
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self._ui_base()}/#/models/{ref.name}/versions/{ref.version}"

    def _ui_base(self) -> str:
        # Links land in summaries, artifacts and logs: a user:password@ in the URI must not.
        return redact_uri(self.tracking_uri).rstrip("/")

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

    def require_alias(self, name: str, alias: str) -> ModelRef:
        """The version holding `alias`, or ModelNotFound naming what is missing."""
        ref = self.version_by_alias(name, alias)
        if ref is None:
            raise ModelNotFound(f"model {name} has no version with alias '{alias}'")
        return ref

    def list_versions(self, name: str) -> list[ModelRef]:
        versions = self.client.search_model_versions(f"name = '{name}'")
        return sorted((self._ref(v) for v in versions), key=lambda r: int(r.version))

    def list_versions_with_aliases(self, name: str) -> list[ModelRef]:
        """Every version, oldest first, with its aliases (version search leaves them out on some stores)."""
        from dataclasses import replace

        from mlflow.exceptions import MlflowException

        try:
            by_alias = self.client.get_registered_model(name).aliases or {}
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return []
            raise
        held: dict[str, list[str]] = {}
        for alias, version in by_alias.items():
            held.setdefault(str(version), []).append(alias)
        return [replace(ref, aliases=tuple(sorted(held.get(ref.version, ())))) for ref in self.list_versions(name)]

    def aliases_of(self, name: str, version: str) -> tuple[str, ...]:
        """The aliases `version` holds now, read from the registered model (the authority on aliases)."""
        by_alias = self.client.get_registered_model(name).aliases or {}
        return tuple(sorted(alias for alias, held in by_alias.items() if str(held) == str(version)))

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


    # -- aliases, promotion and rollback ------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version`; MLflow reassigns an alias atomically."""
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias` if it exists (removing an absent alias is not an error)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise

    def set_version_tags(self, name: str, version: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, _text(value))

    def promote_champion(self, name: str, version: str, expected: str | None) -> str | None:
        """Make `version` the champion; the old one becomes `previous-champion`. Returns the old version.

        `expected` is the champion the caller compared against (None: there was none). If the
        champion is another one now, a concurrent deploy won and this verdict is stale, so nothing
        moves (ChampionMoved). MLflow has no compare-and-set on aliases: this re-read narrows the
        race to the milliseconds between it and the reassign below, it does not close it.
        `previous-champion` is written first and `champion` then moves in one atomic reassign, so a
        reader (the serving app) always finds a champion.
        """
        current = self.version_by_alias(name, ALIAS_CHAMPION)
        now = current.version if current is not None else None
        if now != expected and now != str(version):
            raise ChampionMoved(
                f"champion of {name} moved from {_v(expected)} to {_v(now)} while this deploy ran; "
                f"v{version} was compared against {_v(expected)}, so it is not promoted (deploy it again)"
            )
        if current is not None and current.version != str(version):
            self.set_alias(name, ALIAS_PREVIOUS_CHAMPION, current.version)
        self.set_alias(name, ALIAS_CHAMPION, str(version))
        return None if current is None or current.version == str(version) else current.version

    def rollback_champion(self, name: str) -> tuple[str | None, str]:
        """Move `champion` back to `previous-champion`; the demoted version gets `rolled-back`.

        Returns (demoted version or None, restored version). `previous-champion` is then removed, so a
        second rollback has nothing to flip back to (no ping-pong between two versions).
        """
        previous = self.version_by_alias(name, ALIAS_PREVIOUS_CHAMPION)
        if previous is None:
            raise ModelNotFound(f"model {name} has no '{ALIAS_PREVIOUS_CHAMPION}' version to roll back to")
        current = self.version_by_alias(name, ALIAS_CHAMPION)
        demoted = None
        if current is not None and current.version != previous.version:
            demoted = current.version
            self.set_alias(name, ALIAS_ROLLED_BACK, demoted)
        self.set_alias(name, ALIAS_CHAMPION, previous.version)
        self.delete_alias(name, ALIAS_PREVIOUS_CHAMPION)
        return demoted, previous.version

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

    # -- audit trail -------------------------------------------------------------------------

    def _audit_runs(self, name: str, create: bool) -> list[str]:
        experiment = f"{name}{AUDIT_EXPERIMENT_SUFFIX}"
        if create:
            experiment_id = self.ensure_experiment(experiment)
        else:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                return []
            experiment_id = found.experiment_id
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{AUDIT_RUN_TAG}` = '{name}'", order_by=["attributes.start_time ASC"]
        )
        ids = [run.info.run_id for run in runs]
        if ids or not create:
            return ids
        run = self.client.create_run(
            experiment_id, run_name=AUDIT_RUN_NAME, tags={AUDIT_RUN_TAG: name, "mlops.note": "append-only audit log"}
        )
        # The run only holds artifacts; finished, it does not show as running forever in the UI.
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        return [run.info.run_id]

    def append_audit(self, record: AuditRecord) -> str:
        """Write the record as a new JSON artifact (never overwriting one), then mirror it in version tags.

        Returns the artifact path. The log is written first: it is the source of truth, the tags are a view.
        """
        run_id = self._audit_runs(record.model_name, create=True)[0]
        path = f"{AUDIT_DIR}/{record.artifact_name}"
        existing = {a.path for a in self.client.list_artifacts(run_id, AUDIT_DIR)}
        if path in existing:  # a uuid4 collision; refusing beats overwriting history
            raise RegistryError(f"audit record {path} already exists; not overwriting it")
        self.client.log_text(run_id, record.to_json(), path)
        if record.affected_version is not None:
            self.set_version_tags(record.model_name, record.affected_version, record.version_tags())
        return path

    def read_audit(self, name: str) -> list[AuditRecord]:
        """Every audit record of model `name`, oldest first."""
        records = []
        for run_id in self._audit_runs(name, create=False):
            if not self.client.list_artifacts(run_id, AUDIT_DIR):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(self.client.download_artifacts(run_id, AUDIT_DIR, tmp))
                for file in sorted(local.glob("*.json")):
                    records.append(AuditRecord.from_json(file.read_text()))
        return sort_records(records)


def open_registry(settings: Settings | None = None) -> Registry:
    """The registry flows and the CLI talk to: MLFLOW_TRACKING_URI, else the embedded SQLite store."""
    settings = settings or Settings()
    return Registry(
        settings.mlflow_tracking_uri or settings.default_tracking_uri(),
        artifact_root=settings.default_artifact_root(),
    )


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


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "no champion"


def _pip_requirements() -> list[str]:
    from importlib import metadata

    return [f"{pkg}=={metadata.version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]
