"""The HTTP service: create_app wires the routes to a ServingState.

Response of POST /predict::

    {"predictions": [...], "probabilities": [[p_class0, p_class1, ...], ...], "classes": [...],
     "model_version": "3", "model_alias": "champion", "route": "champion", "request_id": "..."}

``probabilities`` / ``classes`` only for classifiers; probabilities are per class, in the order
of ``classes``. Errors are ``{"detail": "..."}`` (+ ``record`` / ``field`` when one is to blame):
400 malformed JSON, 401 missing or wrong API key, 413 body over serving.max_body_bytes, 415 body
not declared ``application/json``, 422 empty body, wrong shape, no records, more than
serving.max_rows, or a field the contract refuses, 500 prediction failed, 503 no champion loaded yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mlops.config import PipelineConfig, Settings
from mlops.serving.metrics import CONTENT_TYPE, ROUTE_CHAMPION
from mlops.serving.models import RegistryLike
from mlops.serving.state import Reply, ServingState

log = logging.getLogger(__name__)

JSON = "application/json"


def _response(reply: Reply) -> Response:
    # orjson straight to bytes: FastAPI's jsonable_encoder would walk every prediction in Python.
    return Response(orjson.dumps(reply.body), status_code=reply.status, media_type=JSON, headers=reply.headers)


class PredictEndpoint:
    """POST /predict as a plain ASGI app.

    It is the hot path: Starlette's request/response wrapping of a handler function costs about
    as much CPU as the whole handler, so this one speaks ASGI messages itself.
    """

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            reply = await self.state.predict(Request(scope, receive))
        except ClientDisconnect:
            self.state.metrics.reject("client_disconnect")
            return
        except Exception:  # a bug, not a bad request: answer like any 5xx and count it
            log.exception("unexpected failure in /predict")
            champion = self.state.slots.champion
            self.state.metrics.observe(champion.version if champion else "none", ROUTE_CHAMPION, 0.0, failed=True)
            reply = Reply(500, {"detail": "internal error"})
        body = orjson.dumps(reply.body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in reply.headers.items()),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(
    config: PipelineConfig,
    tracking_uri: str,
    *,
    registry_factory: Callable[[], RegistryLike] | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The serving app for `config.model.name`, reading the registry at `tracking_uri`.

    `settings` (read from the environment when not given) say where the write-ahead segments live.
    """
    state = ServingState(config, tracking_uri, registry_factory, settings)
    # No /docs or /openapi.json: they would be unauthenticated and say nothing the README does not.
    app = FastAPI(
        title="mlops serving", lifespan=state.lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.serving = state
    app.router.routes.append(Route("/predict", PredictEndpoint(state), methods=["POST"]))

    @app.get("/health")
    async def health() -> Response:
        """Alive: the process answers (no auth, no model needed)."""
        return _response(Reply(200, {"status": "ok"}))

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        """200 once a champion is loaded and the log can keep what it accepts, else 503; details either way."""
        if denied := state.denied(request):
            return _response(denied)
        ok, status = state.ready()
        return _response(Reply(200 if ok else 503, status))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text format."""
        if denied := state.denied(request):
            return _response(denied)
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/labels")
    async def labels(request: Request) -> Response:
        """Ground truth for earlier predictions, by request_id and row."""
        return _response(await state.add_labels(request))

    return app
