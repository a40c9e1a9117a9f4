"""The serving app's catalogue of models: one `ModelService` per model, the default one, and what they share.

`ServingHost` is what create_app wires routes to: it finds a model by name, starts and stops every
model's log writers, loads the default model at start-up (the others on first use, through
`LoadedModels`), and assembles /ready. The metrics registry and the API key are app-wide; slots,
refresh, batching and the prediction-log partition are each model's own, so one model's swap,
load failure or log trouble never reaches another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from mlops.config import PipelineConfig, Settings
from mlops.errors import ConfigError
from mlops.serving import auth
from mlops.serving.memory import LoadedModels
from mlops.serving.metrics import ServingMetrics
from mlops.serving.models import RegistryLike
from mlops.serving.payload import shown_name
from mlops.serving.state import ModelService, Reply


class ServingHost:
    """Every model the app serves, by catalogue name, and the app-wide parts."""

    def __init__(
        self,
        configs: Sequence[PipelineConfig],
        tracking_uri: str,
        registry_factory: Callable[[], RegistryLike] | None = None,
        settings: Settings | None = None,
        default_model: str | None = None,
    ) -> None:
        if not configs:
            raise ConfigError("nothing to serve: the catalogue has no usable model")
        settings = settings or Settings()
        names = [c.model.name for c in configs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"model '{duplicate}' is configured twice; each model is served once")
        default_model = default_model or names[0]
        if default_model not in names:
            raise ConfigError(f"default model '{default_model}' is not among the served models ({', '.join(names)})")

        def default_factory() -> RegistryLike:
            from mlops.registry import Registry

            return Registry(tracking_uri)

        factory = registry_factory or default_factory
        self.metrics = ServingMetrics()
        self.api_key = settings.serving_api_key()
        self.services: dict[str, ModelService] = {}
        self.swaps = 0  # bumped on every swap of any model: the OpenAPI document's cache key
        for config in configs:
            # One registry client per model: a slow registry call of one model's refresh does not
            # hold a client another model's refresh waits for.
            self.services[config.model.name] = ModelService(config, factory, settings, self.metrics, self._swapped)
        self.default = self.services[default_model]
        self.memory = LoadedModels(self.default.serving.max_loaded_models)
        for service in self.services.values():
            service.memory = self.memory

    def _swapped(self, _service: ModelService) -> None:
        self.swaps += 1

    def get(self, name: str) -> ModelService | None:
        return self.services.get(name)

    def unknown(self, name: str) -> Reply:
        """404 naming the model (shortened and escaped: the name is the client's)."""
        self.metrics.reject("unknown_model")
        return Reply(404, {"detail": f"unknown model '{shown_name(name)}'"})

    def denied(self, request: Request) -> Reply | None:
        """401 unless the API key is off or the request carries it (routes that are no model's)."""
        if self.api_key is None or auth.key_matches(self.api_key, request.headers.get(auth.API_KEY_HEADER)):
            return None
        self.metrics.reject("unauthorized")
        return Reply(401, {"detail": f"missing or invalid {auth.API_KEY_HEADER} header"})

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        # Every model's writers start now, whether or not it is ever loaded: they replay what a
        # previous process left in its write-ahead segments.
        for service in self.services.values():
            service.start_logs()
        # The default model loads in the background: /health answers at once, /ready says 503
        # until its champion is in. The others load on their first request.
        starter = asyncio.create_task(self.memory.use(self.default))
        try:
            yield
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starter
            await asyncio.gather(*(service.close() for service in self.services.values()))

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """The default model's readiness and details (top level, as with one model) plus every model's."""
        ok, status = self.default.ready()
        models = {}
        for name, service in self.services.items():
            model_ok, model_status = service.ready() if service is not self.default else (ok, status)
            models[name] = {
                "ready": model_ok,
                "loaded": model_status["loaded"],
                "champion": (model_status["models"].get("champion") or {}).get("version"),
                "mode": model_status["mode"],
                "last_error": model_status["last_error"],
                "prediction_log": model_status["prediction_log"]["status"],
            }
        status = {
            **status,
            "default_model": self.default.name,
            "max_loaded_models": self.memory.limit,
            "loaded_models": self.memory.names,
            "catalogue": models,
        }
        return ok, status
