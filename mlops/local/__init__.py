"""Tooling for the local stack, not domain logic: service processes, the Prefect REST helper, the
traffic client for the serving app and the churn simulator behind the demo data and the tests.

The submodules are imported when first used, not with the package: a command that only asks
whether the stack runs must not pay for the simulator's SciPy and scikit-learn (about a second).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["prefect_rest", "simulate", "stack", "traffic"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'mlops.local' has no attribute '{name}'")
    return importlib.import_module(f"mlops.local.{name}")
