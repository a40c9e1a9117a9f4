"""Settings: where infrastructure lives, read from the environment only (STYLE.md rule 5).

A pipeline config says what a run does and never names a secret or where one is sent; everything
here comes from environment variables with embedded local defaults. `mlops.config.Settings` is
this class, re-exported.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Infrastructure settings, read from the environment once, with embedded local defaults."""

    # Only the aliases name environment variables: matching field names too would read the
    # shell's HOME into `home` and put the embedded stores in the user's home directory.
    model_config = SettingsConfigDict(extra="ignore")

    home: Path = Field(default=Path(".mlops"), alias="MLOPS_HOME")
    mlflow_tracking_uri: str | None = Field(default=None, alias="MLFLOW_TRACKING_URI")
    prefect_api_url: str | None = Field(default=None, alias="PREFECT_API_URL")
    # Where `make up` serves the local stack; the CLI uses it when it answers and nothing is set.
    stack_host: str = Field(default="127.0.0.1", alias="MLOPS_STACK_HOST")
    prefect_port: int = Field(default=4200, alias="MLOPS_PREFECT_PORT")
    mlflow_port: int = Field(default=5000, alias="MLOPS_MLFLOW_PORT")
    # The rest of the loop `make up` runs: a worker on the process pool and the serving app.
    serving_port: int = Field(default=8000, alias="MLOPS_SERVING_PORT")
    worker_port: int = Field(default=8081, alias="MLOPS_WORKER_PORT")
    worker_poll_seconds: float = Field(default=2.0, gt=0.0, alias="MLOPS_WORKER_POLL_SECONDS")
    prefect_file: Path = Field(default=Path("prefect.yaml"), alias="MLOPS_PREFECT_FILE")
    # The model catalogue: every config file here is one model with its own closed loop.
    catalogue_dir: Path = Field(default=Path("configs"), alias="MLOPS_CATALOGUE")
    # The Feast repository `stack up` applies before deploying the flows (docs/features.md).
    feature_repo: Path = Field(default=Path("features"), alias="MLOPS_FEATURE_REPO")
    # A team's feature store (mlops/features/backends.py): unset, the repository's file decides
    # (local registry file, SQLite online store, sources beside the repository).
    feast_registry: str | None = Field(default=None, alias="MLOPS_FEAST_REGISTRY")
    feast_online_store: str | None = Field(default=None, alias="MLOPS_FEAST_ONLINE_STORE")
    feast_source_uri: str | None = Field(default=None, alias="MLOPS_FEAST_SOURCE_URI")
    # The model `POST /predict` (without a model name) answers for; unset: the catalogue's first
    # model by file name.
    default_model: str | None = Field(default=None, alias="MLOPS_DEFAULT_MODEL")
    # Automations that are not deployment triggers (crashing runs whose heartbeats stopped).
    automations_file: Path = Field(default=Path("deployments/automations.yaml"), alias="MLOPS_AUTOMATIONS_FILE")
    # Who is told (drift, degradation, promotion, refusal, rollback, approval asked, a failed run):
    # the automations of this file send through the Prefect notification block `mlops-notify`.
    notifications_file: Path = Field(default=Path("deployments/notifications.yaml"), alias="MLOPS_NOTIFICATIONS_FILE")
    # A generic webhook `make up` saves as that block; never in a YAML file of the repository. Unset
    # (and no block of that name made by hand, e.g. Slack in the UI): the notifications are not applied.
    notify_webhook_url: SecretStr | None = Field(default=None, alias="MLOPS_NOTIFY_WEBHOOK_URL")
    s3_endpoint_url: str | None = Field(default=None, alias="MLOPS_S3_ENDPOINT_URL")
    # The production stack (README "Production stack"): unset, `stack up` keeps SQLite and local files.
    prefect_database_url: str | None = Field(default=None, alias="MLOPS_PREFECT_DATABASE_URL")
    mlflow_backend_uri: str | None = Field(default=None, alias="MLOPS_MLFLOW_BACKEND_URI")
    mlflow_artifacts_destination: str | None = Field(default=None, alias="MLOPS_MLFLOW_ARTIFACTS_DESTINATION")
    mlflow_allowed_hosts: str | None = Field(default=None, alias="MLOPS_MLFLOW_ALLOWED_HOSTS")
    # Used when a config asks for Dask without naming a scheduler: teams point every run at theirs.
    dask_address: str | None = Field(default=None, alias="MLOPS_DASK_ADDRESS")
    # The serving app's write-ahead segments: every logged row is on this local disk before its
    # response goes out (README "Serving"). Off only to measure what it costs.
    serving_wal: bool = Field(default=True, alias="MLOPS_SERVING_WAL")
    serving_wal_dir: Path | None = Field(default=None, alias="MLOPS_SERVING_WAL_DIR")
    serving_wal_fsync: bool = Field(default=False, alias="MLOPS_SERVING_WAL_FSYNC")
    # What one client may hold of the serving process (mlops/serving/connections.py): seconds to
    # deliver a whole request (headers and body; 408 after), and open connections (503 beyond).
    # The time is the client's to send, not the model's to answer: a slow link of 1 Mbit/s sends
    # serving.max_body_bytes' default in 8 s.
    serving_request_timeout: float = Field(default=30.0, gt=0.0, alias="MLOPS_SERVING_REQUEST_TIMEOUT")
    serving_max_connections: int = Field(default=512, ge=1, alias="MLOPS_SERVING_MAX_CONNECTIONS")
    # How long logged rows may wait for the destination before /ready answers 503 (docs/serving.md).
    serving_log_retry_seconds: float = Field(default=300.0, ge=0, alias="MLOPS_SERVING_LOG_RETRY_SECONDS")
    # The serving app's API key (auth is on when set and non-empty) and the serving app the deploy
    # watch reads /metrics from, sending that key. Both are fixed names here, never config: see MOVED_KEYS.
    api_key: SecretStr | None = Field(default=None, alias="MLOPS_API_KEY")
    # Packages a config's model.estimator may be imported from besides scikit-learn (comma-separated,
    # e.g. "xgboost,lightgbm"): a config must not import arbitrary modules, whose import runs code.
    estimator_modules: str = Field(default="", alias="MLOPS_ESTIMATOR_MODULES")
    serving_url: str | None = Field(default=None, alias="MLOPS_SERVING_URL")
    # Datasets are read whole into memory: a bigger file (or a device behind a symlink) is refused.
    max_dataset_bytes: int = Field(default=1 << 30, gt=0, alias="MLOPS_MAX_DATASET_BYTES")

    @property
    def local_prefect_url(self) -> str:
        return f"http://{self.stack_host}:{self.prefect_port}/api"

    @property
    def local_mlflow_url(self) -> str:
        return f"http://{self.stack_host}:{self.mlflow_port}"

    @property
    def watched_serving_url(self) -> str:
        """The serving app the post-deployment watch reads: MLOPS_SERVING_URL, else the local stack's."""
        return self.serving_url or f"http://{self.stack_host}:{self.serving_port}"

    def estimator_module_prefixes(self) -> tuple[str, ...]:
        """Top-level packages model.estimator may name: scikit-learn plus MLOPS_ESTIMATOR_MODULES."""
        extra = (name.strip().rstrip(".") for name in self.estimator_modules.split(","))
        return ("sklearn", *(name for name in extra if name))

    def serving_api_key(self) -> str | None:
        """The serving app's API key, or None when auth is off (unset or empty)."""
        return (self.api_key.get_secret_value() if self.api_key else "") or None

    def default_tracking_uri(self) -> str:
        """The embedded store used when no server is configured or running."""
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def default_artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    def serving_wal_path(self) -> Path | None:
        """Where the serving app keeps its write-ahead segments; None when they are off."""
        if not self.serving_wal:
            return None
        return (self.serving_wal_dir or self.home / "serving-wal").resolve()
