"""The HTTP service: create_app wires the routes to a ServingHost (one ModelService per catalogue model).

Routes, per model ``{name}`` of the catalogue (the default model also answers without a name; with
several models and none chosen as the default, the unnamed routes answer 409 naming the choice):

* ``POST /models/{name}/predict`` (and ``POST /predict``), ``POST /models/{name}/labels`` (and ``POST /labels``)
* the Open Inference Protocol (KServe V2): ``GET /v2``, ``GET /v2/health/live``, ``GET /v2/health/ready``,
  ``GET /v2/models/{name}``, ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``
* ``GET /health``, ``GET /ready``, ``GET /metrics``, ``GET /openapi.json``, ``GET /docs``

Response of POST /predict::

    {"predictions": [...], "probabilities": [[p_class0, p_class1, ...], ...], "classes": [...],
     "model_version": "3", "model_alias": "champion", "route": "champion", "request_id": "..."}

A store-fed model (dataset.feature_service) also takes ``{"entities": [{"customer_id": 123}, ...]}``
(mlops.serving.entities); its answer adds ``statuses`` (one per record) and ``errors`` (the records
not scored, each ``{"record", "status", "detail", "field"?, "view"?}``, with a null prediction);
503 when its online store does not answer.

``probabilities`` / ``classes`` only for classifiers; probabilities are per class, in the order
of ``classes``. Errors are ``{"detail": "..."}`` (+ ``record`` / ``field`` when one is to blame):
400 malformed JSON, 401 missing or wrong API key, 404 unknown model, 413 body over
serving.max_body_bytes, 415 body not declared ``application/json``, 422 empty body, wrong shape,
no records, more than serving.max_rows, or a field the contract refuses, 500 prediction failed,
503 no champion loaded yet. The V2 routes answer errors as ``{"error": "..."}`` (400 for any
request the model cannot take, as the protocol says).

Auth (MLOPS_API_KEY): every model route, /ready and /metrics need the key; /health,
/v2/health/*, /docs and /openapi.json do not. The docs must open in a browser, which cannot send
a header with the page, and the document holds only request shapes (see mlops.serving.openapi).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mlops.config import PipelineConfig, Settings
from mlops.serving import oip, openapi
from mlops.serving.host import ServingHost
from mlops.serving.metrics import CONTENT_TYPE
from mlops.serving.models import RegistryLike
from mlops.serving.payload import PayloadError
from mlops.serving.state import REQUEST_ID_HEADER, ModelService, Reply

log = logging.getLogger(__name__)

JSON = "application/json"


def _response(reply: Reply) -> Response:
    # orjson straight to bytes: FastAPI's jsonable_encoder would walk every prediction in Python.
    return Response(orjson.dumps(reply.body), status_code=reply.status, media_type=JSON, headers=reply.headers)


def _v2_error(reply: Reply) -> Response:
    """A refusal in the V2 protocol's shape: {"error": "..."}, 400 for what /predict calls 422."""
    status = 400 if reply.status == 422 else reply.status
    return Response(orjson.dumps({"error": reply.body.get("detail", "error")}), status_code=status,
                    media_type=JSON, headers=reply.headers)


async def _send(send: Send, reply: Reply) -> None:
    body = orjson.dumps(reply.body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in reply.headers.items()),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _predict(service: ModelService, scope: Scope, receive: Receive) -> Reply | None:
    try:
        return await service.predict(Request(scope, receive))
    except ClientDisconnect:
        service.metrics.reject("client_disconnect")
        return None
    except Exception:  # a bug around the model, not a bad request: answer like any 5xx and count it
        log.exception("unexpected failure in predict (model %s)", service.name)
        # Not as an error of the champion version: the model's own failures are counted where its
        # predict call is made (ModelService._prediction_failed); anything a request can trigger
        # outside it would let any client roll a healthy version back.
        service.metrics.service_error("internal_error")
        return Reply(500, {"detail": "internal error"})


class PredictEndpoint:
    """POST /predict (the default model) as a plain ASGI app.

    It is the hot path: Starlette's request/response wrapping of a handler function costs about
    as much CPU as the whole handler, so this one speaks ASGI messages itself.
    """

    def __init__(self, service: ModelService) -> None:
        self.state = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = await _predict(self.state, scope, receive)
        if reply is not None:
            await _send(send, reply)


class NoDefaultEndpoint:
    """POST /predict when no model is the default: 409 naming the choice, never another model's answer."""

    def __init__(self, host: ServingHost) -> None:
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The key first, as on every model route: the detail names the catalogue's models.
        await _send(send, self.host.denied(Request(scope, receive)) or self.host.no_default())


class ModelPredictEndpoint:
    """POST /models/{name}/predict as a plain ASGI app, like PredictEndpoint: one dict lookup more."""

    def __init__(self, host: ServingHost) -> None:
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = scope["path_params"]["name"]
        service = self.host.services.get(name)
        if service is None:
            await _send(send, self.host.unknown(name))
            return
        reply = await _predict(service, scope, receive)
        if reply is not None:
            await _send(send, reply)


def create_app(
    config: PipelineConfig | Sequence[PipelineConfig] | Any,
    tracking_uri: str,
    *,
    registry_factory: Callable[[], RegistryLike] | None = None,
    settings: Settings | None = None,
    default_model: str | None = None,
) -> FastAPI:
    """The serving app for one config, a list of configs or a `Catalogue`, reading the registry at `tracking_uri`.

    The default model (answering /predict and /labels) is `default_model`, else MLOPS_DEFAULT_MODEL,
    else the one config with `serving.default: true`, else the only config; otherwise there is none
    and those routes answer 409 (mlops.serving.host.choose_default). `settings` (read from the
    environment when not given) say where the write-ahead segments live.
    """
    settings = settings or Settings()
    configs = _configs(config)
    host = ServingHost(
        configs, tracking_uri, registry_factory, settings, default_model or settings.default_model,
    )
    app = FastAPI(
        title="mlops serving", lifespan=host.lifespan, docs_url=None, redoc_url=None, openapi_url="/openapi.json",
        description="Predictions from every model of the catalogue; request schemas come from each model's data contract.",
    )
    app.state.host = host
    app.state.serving = host.default  # the default model's state, as when the app served one model
    # The predict routes first: the router tries routes in order, and these are the hot path.
    # (in front of the docs routes FastAPI has already added).
    default_predict = PredictEndpoint(host.default) if host.default is not None else NoDefaultEndpoint(host)
    app.router.routes[:0] = [
        Route("/predict", default_predict, methods=["POST"]),
        Route("/models/{name}/predict", ModelPredictEndpoint(host), methods=["POST"]),
    ]
    _install_openapi(app, host)
    _install_docs_page(app)

    @app.get("/health")
    async def health() -> Response:
        """Alive: the process answers (no auth, no model needed)."""
        return _response(Reply(200, {"status": "ok"}))

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        """200 once the default model's champion is loaded and its log can keep what it accepts, else 503;
        details either way, with every model's under `catalogue`."""
        if denied := host.denied(request):
            return _response(denied)
        ok, status = host.ready()
        return _response(Reply(200 if ok else 503, status))

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text format; every series has a `model` label."""
        if denied := host.denied(request):
            return _response(denied)
        return Response(host.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/labels")
    async def labels(request: Request) -> Response:
        """Ground truth for earlier predictions of the default model, by request_id and row."""
        if host.default is None:
            return _response(host.denied(request) or host.no_default())
        return _response(await host.default.add_labels(request))

    @app.post("/models/{name}/labels")
    async def model_labels(name: str, request: Request) -> Response:
        """Ground truth for earlier predictions of model `name`, by request_id and row."""
        service = host.get(name)
        if service is None:
            return _response(host.unknown(name))
        return _response(await service.add_labels(request))

    _add_open_inference_protocol(app, host)
    return app


def _configs(config: Any) -> list[PipelineConfig]:
    if isinstance(config, PipelineConfig):
        return [config]
    entries = getattr(config, "entries", None)
    if entries is not None:  # a Catalogue: its models in file-name order
        return [entry.config for entry in entries.values()]
    return list(config)


DOCS_ASSETS = "/docs/assets"


def _install_docs_page(app: FastAPI) -> None:
    """/docs: Swagger UI with its script and style served from the installed swagger-ui-py package.

    FastAPI's own page loads them from a CDN, which a machine without internet (or a locked-down
    network) never reaches: the page stayed white. The package is found without importing it.
    """
    from importlib.util import find_spec

    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles

    spec = find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed: /docs has no assets to serve")
    static = f"{list(spec.submodule_search_locations)[0]}/static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=static), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def _install_openapi(app: FastAPI, host: ServingHost) -> None:
    """/openapi.json built on request from the loaded contracts, cached until a model swaps."""
    from fastapi.openapi.utils import get_openapi

    cache: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        key = host.swaps
        if cache.get("key") != key or "doc" not in cache:
            base = get_openapi(title=app.title, version="1", description=app.description, routes=app.routes)
            models = [
                (name, s.contract, s.serving.max_rows, s.slots.champion.version if s.slots.champion else None)
                for name, s in host.services.items()
            ]
            services = {name: s.entities.schema for name, s in host.services.items()
                        if s.entities is not None and s.entities.schema is not None}
            default = host.default.name if host.default is not None else None
            cache["doc"] = openapi.add_models(base, models, default, host.api_key is not None, services)
            cache["key"] = key
        return cache["doc"]

    app.openapi = document  # type: ignore[method-assign]


def _add_open_inference_protocol(app: FastAPI, host: ServingHost) -> None:
    """The Open Inference Protocol's REST routes (KServe V2), beside the project's own."""

    async def model_or_error(name: str, request: Request, load: bool = True) -> ModelService | Response:
        """The model `name` (loaded unless `load` is False), or the V2 error: 404 unknown, 401 no key."""
        service = host.get(name)
        if service is None:
            return _v2_error(host.unknown(name))
        if denied := service.denied(request):
            return _v2_error(denied)
        if load:
            await service.use()
        return service

    @app.get("/v2")
    async def v2_server_metadata() -> Response:
        """Server metadata (Open Inference Protocol)."""
        return _response(Reply(200, {"name": "mlops-serving", "version": oip.PROTOCOL_VERSION, "extensions": []}))

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        """Alive (Open Inference Protocol)."""
        return _response(Reply(200, {"live": True}))

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        """Ready to infer: the default model's champion is loaded (the others load on first use);
        without a default model, as /ready says."""
        ok, _ = host.default.ready() if host.default is not None else host.ready()
        return _response(Reply(200 if ok else 503, {"ready": ok}))

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(name: str, request: Request) -> Response:
        """Model ready (Open Inference Protocol); asking loads an unloaded model, like a request would."""
        found = await model_or_error(name, request)
        if isinstance(found, Response):
            return found
        ok, _ = found.ready()
        return _response(Reply(200 if ok else 503, {"name": name, "ready": ok}))

    @app.get("/v2/models/{name}")
    async def v2_model_metadata(name: str, request: Request) -> Response:
        """Model metadata (Open Inference Protocol): inputs from the champion's data contract."""
        found = await model_or_error(name, request)
        if isinstance(found, Response):
            return found
        champion = found.slots.champion
        if champion is None:
            return _v2_error(Reply(503, {"detail": f"model '{name}' has no champion loaded yet"}))
        versions = [m.version for m in (champion, found.slots.canary) if m is not None]
        return _response(Reply(200, oip.model_metadata(name, versions, champion.contract, champion.classes)))

    @app.post("/v2/models/{name}/infer")
    async def v2_infer(name: str, request: Request) -> Response:
        """Inference (Open Inference Protocol): one input tensor per feature; logged like /predict."""
        started = time.perf_counter()
        found = await model_or_error(name, request, load=False)  # the body is read (and limited) first
        if isinstance(found, Response):
            return found
        service = found
        try:
            body = await service.read_body(request)
            await service.use()
            champion = service.slots.champion
            if champion is None:
                service.metrics.reject("no_model")
                return _v2_error(Reply(503, {"detail": "no champion model loaded yet"}))
            # Inputs are read against the champion's contract; a canary answering validates again.
            records, client_id, wanted = oip.parse_infer_request(
                body, champion.contract, service.serving.max_rows, champion.classes is not None
            )
        except PayloadError as err:
            return _v2_error(service.refuse(err))
        outcome = await service.score(records, request.headers.get(service.serving.sticky_header), started)
        if isinstance(outcome, Reply):
            return _v2_error(outcome)
        scores = outcome.scores
        doc = oip.infer_response(
            name, outcome.model.version, client_id or outcome.request_id, scores.predictions,
            scores.probabilities, scores.classes, wanted,
            {"request_id": outcome.request_id, "model_alias": outcome.alias, "route": outcome.route},
        )
        return _response(Reply(200, doc, {REQUEST_ID_HEADER: outcome.request_id}))
