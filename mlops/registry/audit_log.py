"""The append-only audit log: one JSON file per record in a dedicated run of `<model>-audit`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlops.audit import AuditRecord, sort_records
from mlops.errors import RegistryError
from mlops.registry.tracking import RunTracking
from mlops.registry.versions import VersionLookup

AUDIT_EXPERIMENT_SUFFIX = "-audit"
AUDIT_RUN_NAME = "audit-log"
AUDIT_RUN_TAG = "mlops.audit_log"
AUDIT_DIR = "audit"


class AuditLog(RunTracking, VersionLookup):
    """Append and read audit records; each append is mirrored in the affected version's tags."""

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
