"""The MLflow handle: what every MLflow request of the project's processes pays for."""

from __future__ import annotations

import sys

from mlops.registry import client


def test_mlflow_header_registry_is_loaded_without_feasts_provider(monkeypatch):
    # Feast's provider made the first MLflow request of every process import all of Feast (~10 s).
    monkeypatch.delitem(sys.modules, client._HEADER_REGISTRY, raising=False)
    client._load_header_providers_without_feast()
    registry = sys.modules[client._HEADER_REGISTRY]
    providers = [type(p).__module__ for p in registry._request_header_provider_registry]
    assert providers, "MLflow's own providers are registered"
    assert all(p.startswith("mlflow.") for p in providers), providers
    headers = registry.resolve_request_headers()
    assert headers["User-Agent"].startswith("mlflow-python-client/")
    # Only the header registry was filtered: the other entry-point groups are MLflow's as before.
    from mlflow.utils import plugins

    assert plugins.get_entry_points("mlflow.request_header_provider"), "the swap is undone"
