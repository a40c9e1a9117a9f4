"""The serving app's catalogue of models: one `ModelService` per model, the default one, and what they share.

`ServingHost` is what create_app wires routes to: it finds a model by name, starts and stops every
model's log writers, loads the default model at start-up (the others on first use, through
`LoadedModels`), and assembles /ready.

The metrics registry and the API key are app-wide; slots, refresh, batching and the
prediction-log partition are each model's own, so one model's swap, load failure or log trouble
never reaches another.

The default model (the one the unnamed routes /predict and /labels answer for) is explicit
(`choose_default`): never whichever file sorts first, so adding a model to the catalogue cannot
change what /predict serves without anyone saying so. With several models and none chosen, the
unnamed routes answer 409 naming the choice to make, and /ready says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from mlops.config import PipelineConfig, Settings
from mlops.errors import ConfigError
from mlops.serving import auth, logstore
from mlops.serving.memory import LoadedModels
from mlops.serving.metrics import ServingMetrics
from mlops.serving.models import RegistryLike
from mlops.serving.payload import shown_name
from mlops.serving.state import ModelService, Reply

log = logging.getLogger(__name__)


# How the default model was chosen, as /ready reports it.
DEFAULT_CONFIGURED = "MLOPS_DEFAULT_MODEL"
DEFAULT_DECLARED = "serving.default"
DEFAULT_ONLY_MODEL = "the only model"


def choose_default(configs: Sequence[PipelineConfig], configured: str | None) -> tuple[str | None, str]:
    """(the default model's name, how it was chosen), or (None, why there is none).

    In order: `configured` (MLOPS_DEFAULT_MODEL, `--default-model`), the one model whose config sets
    `serving.default: true`, the only model of a one-model catalogue. Raises ConfigError when
    `configured` is not served: a typo must not fall back to another model silently.
    """
    names = [c.model.name for c in configs]
    if configured:
        if configured not in names:
            raise ConfigError(f"default model '{shown_name(configured)}' is not among the served models "
                              f"({', '.join(map(shown_name, names))})")
        return configured, DEFAULT_CONFIGURED
    declared = [c.model.name for c in configs if c.serving.default]
    if len(declared) == 1:
        return declared[0], DEFAULT_DECLARED
    if len(names) == 1:
        return names[0], DEFAULT_ONLY_MODEL
    override = "MLOPS_DEFAULT_MODEL (mlops serve --default-model)"
    if declared:
        return None, (f"no default model: {', '.join(map(shown_name, declared))} each set serving.default: true; "
                      f"keep it in one config, or set {override}; named routes /models/<name>/predict answer meanwhile")
    return None, (f"no default model: {len(names)} models are served ({', '.join(map(shown_name, names))}) and none "
                  f"is the default; call /models/<name>/predict, or set serving.default: true in one model's config "
                  f"or {override}")


def describe_default(configs: Sequence[PipelineConfig], configured: str | None) -> str:
    """One line for the start of a serving process: which model /predict answers for, and why."""
    name, how = choose_default(configs, configured)
    return f"default model (POST /predict): {shown_name(name)} ({how})" if name is not None else f"warning: {how}"


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
        chosen, self.default_source = choose_default(configs, default_model)

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
        # None: several models and none chosen; the unnamed routes answer `no_default` (409).
        self.default: ModelService | None = self.services[chosen] if chosen is not None else None
        # App-wide: the default model's limit; without one, the largest any model asks for.
        limit = (self.default.serving.max_loaded_models if self.default is not None
                 else max(c.serving.max_loaded_models for c in configs))
        self.memory = LoadedModels(limit)
        for service in self.services.values():
            service.memory = self.memory

    def _swapped(self, _service: ModelService) -> None:
        self.swaps += 1

    def get(self, name: str) -> ModelService | None:
        return self.services.get(name)

    def no_default(self) -> Reply:
        """409 for an unnamed route when no model is the default: the detail names the choice to make."""
        self.metrics.reject("no_default_model")
        return Reply(409, {"detail": self.default_source})

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
        starter = asyncio.create_task(self.memory.use(self.default)) if self.default is not None else None
        if self.default is None:
            log.warning("%s", self.default_source)
        try:
            yield
        finally:
            if starter is not None:
                starter.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starter
            await asyncio.gather(*(service.close() for service in self.services.values()))

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """The default model's readiness and details (top level, as with one model) plus every model's.

        Without a default model: ready unless a model's prediction log is failing (the named routes
        work), with `default_model` null and `default_model_error` saying what to choose.
        """
        default = self.default
        ok, status = default.ready() if default is not None else (True, {})
        models = {}
        for name, service in self.services.items():
            model_ok, model_status = service.ready() if service is not default else (ok, status)
            if default is None and model_status["prediction_log"]["status"] == logstore.FAILING:
                ok = False
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
            "ready": ok,
            "default_model": default.name if default is not None else None,
            **({"default_model_source": self.default_source} if default is not None
               else {"default_model_error": self.default_source}),
            "max_loaded_models": self.memory.limit,
            "loaded_models": self.memory.names,
            "catalogue": models,
        }
        return ok, status
