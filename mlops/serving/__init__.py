"""The prediction service: every catalogue model, champion/canary/shadow routing, micro-batching, prediction log.

Exports are resolved lazily so that importing the log readers does not import FastAPI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "model_log_uri", "read_labelled_predictions", "read_prediction_log", "run"]

_EXPORTS = {
    "create_app": "mlops.serving.app",
    "run": "mlops.serving.server",
    "read_prediction_log": "mlops.serving.prediction_log",
    "model_log_uri": "mlops.serving.prediction_log",
    "read_labelled_predictions": "mlops.serving.prediction_log",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlops.serving' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
