"""Run the serving app under uvicorn: one worker, loopback by default."""

from __future__ import annotations

import logging
import os

from mlops.config import PipelineConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def run(config: PipelineConfig, tracking_uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve `config.model.name` until SIGINT/SIGTERM, then flush the prediction log and exit."""
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
        create_app(config, tracking_uri),
        host=host,
        port=port,
        workers=1,
        # Per-request access lines would cost more than a prediction; /metrics counts requests.
        access_log=False,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
