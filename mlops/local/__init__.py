"""Tooling for the local stack, not domain logic: service processes, the Prefect REST helper, the
traffic client for the serving app and the churn simulator behind the demo data and the tests."""

from mlops.local import prefect_rest, simulate, stack, traffic

__all__ = ["prefect_rest", "simulate", "stack", "traffic"]
