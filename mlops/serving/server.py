"""Run the serving app under uvicorn: one worker, loopback by default."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from mlops.config import PipelineConfig, load_config
from mlops.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serving_configs(config_path: str | Path | None, catalogue_dir: str | Path) -> tuple[list[PipelineConfig], list[str]]:
    """What to serve: the one model of `config_path` when given, else every model of the catalogue.

    Returns the configs and a one-line problem per catalogue file that was refused (the other
    models are served anyway); raises ConfigError when nothing is left to serve.
    """
    if config_path is not None:
        return [load_config(config_path)], []
    from mlops.catalogue import load_catalogue

    catalogue = load_catalogue(catalogue_dir)
    problems = [str(problem) for problem in catalogue.problems]
    if not catalogue.entries:
        raise ConfigError(f"nothing to serve: the catalogue {catalogue_dir} has no usable model"
                          + (f" ({problems[0]})" if problems else ""))
    return [entry.config for entry in catalogue.entries.values()], problems


def run(
    configs: PipelineConfig | Sequence[PipelineConfig], tracking_uri: str, host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT, default_model: str | None = None,
) -> None:
    """Serve the models of `configs` until SIGINT/SIGTERM, then flush every prediction log and exit.

    `default_model` answers /predict (else MLOPS_DEFAULT_MODEL, serving.default, the only model).
    """
    import uvicorn

    from mlops.serving.app import create_app

    # A dead tracking server must fail a refresh in seconds, not after MLflow's default two
    # minutes of retries; serving goes on with the loaded model meanwhile.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # One OpenMP thread: concurrency comes from micro-batching, and on small batches idle
    # OpenMP workers spin for the CPU the event loop needs to parse the next requests.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(configs, tracking_uri, default_model=default_model),
        host=host,
        port=port,
        workers=1,
        # Per-request access lines would cost more than a prediction; /metrics counts requests.
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
