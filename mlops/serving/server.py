"""Run the serving app under uvicorn: one worker, loopback by default."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.config import PipelineConfig, Settings, load_config
from mlops.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

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
    port: int = DEFAULT_PORT, default_model: str | None = None, settings: Settings | None = None,
) -> None:
    """Serve the models of `configs` until SIGINT/SIGTERM, then flush every prediction log and exit.

    `default_model` answers /predict (else MLOPS_DEFAULT_MODEL, serving.default, the only model).
    """
    import uvicorn

    from mlops.serving.app import create_app

    settings = settings or Settings()
    # A dead tracking server must fail a refresh in seconds, not after MLflow's default two
    # minutes of retries; serving goes on with the loaded model meanwhile.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # One OpenMP thread: concurrency comes from micro-batching, and on small batches idle
    # OpenMP workers spin for the CPU the event loop needs to parse the next requests.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(configs, tracking_uri, settings=settings, default_model=default_model)
    server = uvicorn.Server(server_config(app, host, port, settings))
    server.run()
    if not server.started:  # the port is taken, or the app's startup failed: said above
        sys.exit(3)


def server_config(app: Any, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration of the serving process, with its bounds on slow and numerous clients."""
    import uvicorn

    from mlops.serving.connections import bounded_protocol

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        # Per-request access lines would cost more than a prediction; /metrics counts requests.
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=30,
        # uvicorn bounds neither the time to send a request nor the open connections (see connections.py).
        http=bounded_protocol(settings.serving_request_timeout, settings.serving_max_connections),
    )
