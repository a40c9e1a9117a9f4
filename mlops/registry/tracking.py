"""Run tracking: experiments, runs, params, metrics, text and file artifacts, UI links."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.registry.client import MlflowHandle, tag_value

if TYPE_CHECKING:
    from mlops.registry.client import ModelRef


class RunTracking(MlflowHandle):
    """Experiments and runs of the tracking store."""

    def ensure_experiment(self, name: str) -> str:
        """Return the experiment id, creating it (with local artifacts for embedded stores)."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = None
        if self.artifact_root is not None and not self._is_server():
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
            experiment_id, run_name=run_name, tags={k: tag_value(v) for k, v in tags.items()}
        )
        return run.info.run_id

    def latest_run(self, experiment: str) -> dict[str, Any] | None:
        """The newest run of an experiment (start time in ms, status, metrics), or None."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = self.client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            return None
        run = runs[0]
        return {"run_id": run.info.run_id, "start_time": run.info.start_time, "status": run.info.status,
                "metrics": dict(run.data.metrics)}

    def end_run(self, run_id: str, succeeded: bool) -> None:
        self.client.set_terminated(run_id, status="FINISHED" if succeeded else "FAILED")

    def set_run_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, tag_value(value))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, tag_value(v)) for k, v in params.items()])

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

    def read_run_text(self, run_id: str, artifact_file: str) -> str | None:
        """A text artifact of the run, or None when the run has no such file."""
        folder = artifact_file.rsplit("/", 1)[0] if "/" in artifact_file else None
        if artifact_file not in {a.path for a in self.client.list_artifacts(run_id, folder)}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            return Path(self.client.download_artifacts(run_id, artifact_file, tmp)).read_text()

    def read_run_json(self, run_id: str, artifact_file: str) -> Any:
        """A JSON artifact of the run, parsed; None when the run has no such file."""
        text = self.read_run_text(run_id, artifact_file)
        return None if text is None else json.loads(text)

    def run_url(self, run_id: str) -> str | None:
        """Link to the run in the MLflow UI, when the store is a server with a UI."""
        if not self._is_server():
            return None
        run = self.client.get_run(run_id)
        return f"{self._ui_base()}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    def version_url(self, ref: ModelRef) -> str | None:
        if not self._is_server():
            return None
        return f"{self._ui_base()}/#/models/{ref.name}/versions/{ref.version}"
