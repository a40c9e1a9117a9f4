"""What the routes share: models, router, logs, metrics; and the /predict logic itself.

Handlers return a `Reply` (status, JSON-able body, headers) so the hot /predict path can send
it as raw ASGI messages while the other routes wrap it in a Starlette Response.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from mlops.config import PipelineConfig, Settings
from mlops.registry import ALIAS_CHAMPION
from mlops.serving import auth, logstore
from mlops.serving.batching import MicroBatcher
from mlops.serving.metrics import ROUTE_CANARY, ROUTE_SHADOW, ServingMetrics
from mlops.serving.models import SLOT_CHAMPION, ModelSlots, RegistryLike
from mlops.serving.payload import PayloadError, check_content_type, parse_labels, parse_records
from mlops.serving.prediction_log import (
    label_columns,
    label_writer,
    logged_feature_columns,
    prediction_columns,
    prediction_writer,
)
from mlops.serving.routing import Router
from mlops.serving.scoring import LoadedModel, Scores

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer before it is encoded."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ServingState:
    """Everything the routes share; built by create_app, started and stopped by the lifespan."""

    def __init__(
        self,
        config: PipelineConfig,
        tracking_uri: str,
        registry_factory: Callable[[], RegistryLike] | None = None,
        settings: Settings | None = None,
    ) -> None:
        settings = settings or Settings()
        self.config = config
        self.serving = serving = config.serving
        self.metrics = ServingMetrics()
        self.router = Router(serving.mode, serving.canary_share)
        self.api_key = settings.serving_api_key()
        self.canary_alias = serving.canary_alias if serving.mode != "champion" else None

        def default_factory() -> RegistryLike:
            from mlops.registry import Registry

            return Registry(tracking_uri)

        self.slots = ModelSlots(
            registry_factory or default_factory, config.model.name, ALIAS_CHAMPION, self.canary_alias,
            on_swap=self._on_swap,
        )
        self.wal_dir = settings.serving_wal_path()
        self.predictions = prediction_writer(
            serving.prediction_log_uri, self.wal_dir, settings.serving_wal_fsync,
            on_error=lambda _: self.metrics.log_errors.labels("predictions").inc(),
            on_dead_letter=self.metrics.dead_letters.labels("predictions").inc,
        )
        self.labels = label_writer(
            serving.prediction_log_uri, self.wal_dir, settings.serving_wal_fsync,
            on_error=lambda _: self.metrics.log_errors.labels("labels").inc(),
            on_dead_letter=self.metrics.dead_letters.labels("labels").inc,
        )
        self._batchers: weakref.WeakKeyDictionary[LoadedModel, MicroBatcher] = weakref.WeakKeyDictionary()
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        self.predictions.start()
        self.labels.start()
        # Load in the background: /health answers at once, /ready says 503 until a champion is in.
        refresher = asyncio.create_task(self._refresh_loop())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            if self._background:
                await asyncio.wait(self._background, timeout=30)
            # The last rows are written before the process exits (uvicorn has drained requests).
            await asyncio.to_thread(self.predictions.close)
            await asyncio.to_thread(self.labels.close)

    async def _refresh_loop(self) -> None:
        await self.slots.refresh()
        await self.slots.run_forever(self.serving.refresh_seconds)

    def _on_swap(self, slot: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        alias = ALIAS_CHAMPION if slot == SLOT_CHAMPION else self.canary_alias or slot
        self.metrics.set_model(alias, old.version if old else None, new.version if new else None)
        # The libraries and the model live as long as the process: moving them out of the cyclic
        # collector's reach turns its full collections from ~200 ms pauses (every few seconds
        # under load, a p99 killer) into a few ms. Refcounting still frees a swapped-out model.
        gc.freeze()

    def batcher(self, model: LoadedModel) -> MicroBatcher:
        found = self._batchers.get(model)
        if found is None:
            histogram = self.metrics.batch_rows.labels(model.version)
            found = MicroBatcher(
                model.score, self.serving.batch_max_rows, self.serving.batch_wait_ms / 1000.0,
                on_batch=histogram.observe,
            )
            self._batchers[model] = found
        return found

    # -- request handling --------------------------------------------------------------------

    def denied(self, request: Request) -> Reply | None:
        """401 unless the API key is off or the request carries it."""
        if self.api_key is None or auth.key_matches(self.api_key, request.headers.get(auth.API_KEY_HEADER)):
            return None
        self.metrics.reject("unauthorized")
        return Reply(401, {"detail": f"missing or invalid {auth.API_KEY_HEADER} header"})

    def refuse(self, err: PayloadError) -> Reply:
        self.metrics.reject(err.reason)
        return Reply(err.status, err.body())

    async def read_body(self, request: Request) -> bytes:
        """The JSON body: 415 unless declared as JSON, 413 as soon as the declared or received size passes the limit."""
        check_content_type(request.headers.get("content-type"))
        limit = self.serving.max_body_bytes
        too_large = PayloadError(413, f"request body over {limit} bytes (serving.max_body_bytes)", "body_too_large")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise PayloadError(400, "invalid Content-Length header", "invalid_header")
            if int(declared) > limit:
                raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def predict(self, request: Request) -> Reply:
        """Score records with the champion (or the canary for its share of callers)."""
        started = time.perf_counter()
        if denied := self.denied(request):
            return denied
        try:
            records = parse_records(await self.read_body(request), self.serving.max_rows)
        except PayloadError as err:
            return self.refuse(err)
        # One read of each slot: a hot swap after this line does not affect this request.
        champion, canary = self.slots.champion, self.slots.canary
        if champion is None:
            self.metrics.reject("no_model")
            return Reply(503, {"detail": "no champion model loaded yet"})
        route = self.router.choose(request.headers.get(self.serving.sticky_header), canary is not None)
        if route == ROUTE_CANARY and canary is not None and self.canary_alias is not None:
            model, alias = canary, self.canary_alias
        else:
            model, alias = champion, ALIAS_CHAMPION
        try:
            clean = model.validator.validate(records)
        except PayloadError as err:
            return self.refuse(err)
        request_id = uuid.uuid4().hex
        headers = {REQUEST_ID_HEADER: request_id}
        try:
            scores = await self.batcher(model).submit(clean)
        except Exception as err:
            log.exception("prediction failed (model %s v%s, request %s)", model.name, model.version, request_id)
            self.metrics.observe(model.version, route, time.perf_counter() - started, failed=True)
            return Reply(500, {"detail": f"prediction failed ({type(err).__name__})", "request_id": request_id}, headers)
        self.log_prediction(request_id, clean, scores, model, alias, route)
        if self.router.shadows and canary is not None:
            self.spawn_shadow(canary, records, request_id)
        body: dict[str, Any] = {"predictions": scores.predictions}
        if scores.probabilities is not None:
            body["probabilities"] = scores.probabilities
            body["classes"] = scores.classes
        body.update(model_version=model.version, model_alias=alias, route=route, request_id=request_id)
        self.metrics.observe(model.version, route, time.perf_counter() - started, failed=False)
        return Reply(200, body, headers)

    async def add_labels(self, request: Request) -> Reply:
        """Ground truth for earlier predictions, checked against the champion's classes."""
        if denied := self.denied(request):
            return denied
        champion = self.slots.champion
        if champion is None:
            self.metrics.reject("no_model")
            return Reply(503, {"detail": "no champion model loaded yet; labels are checked against its classes"})
        try:
            items = parse_labels(await self.read_body(request), self.serving.max_rows, champion.contract)
        except PayloadError as err:
            return self.refuse(err)
        self.labels.append(label_columns(items, time.time()), len(items))
        return Reply(200, {"accepted": len(items)})

    def log_prediction(
        self, request_id: str, records: list[dict[str, Any]], scores: Scores, model: LoadedModel, alias: str, route: str
    ) -> None:
        columns = prediction_columns(request_id, records, scores, model.name, model.version, alias, route, time.time())
        self.predictions.append(columns, len(records), float_columns=logged_feature_columns(model.numeric_features))

    def spawn_shadow(self, model: LoadedModel, records: list[dict[str, Any]], request_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._shadow(model, records, request_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow(self, model: LoadedModel, records: list[dict[str, Any]], request_id: str) -> None:
        """Score silently with the canary; its failures are counted, never seen by the caller."""
        started = time.perf_counter()
        try:
            clean = model.validator.validate(records)
        except PayloadError as err:
            self.metrics.reject(f"shadow_{err.reason}")
            return
        try:
            scores = await self.batcher(model).submit(clean)
        except Exception:
            log.exception("shadow prediction failed (model %s v%s)", model.name, model.version)
            self.metrics.observe(model.version, ROUTE_SHADOW, time.perf_counter() - started, failed=True)
            return
        self.metrics.observe(model.version, ROUTE_SHADOW, time.perf_counter() - started, failed=False)
        self.log_prediction(request_id, clean, scores, model, self.canary_alias or ROUTE_SHADOW, ROUTE_SHADOW)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: a champion is loaded and no log writer is FAILING (rows it accepts could be lost).

        A destination that refuses writes while the write-ahead segments hold every row is
        RETRYING and stays ready: a shared store's outage must not take every replica out of
        service at once, and nothing is lost meanwhile.
        """
        status = self.slots.status()
        health = {self.predictions.health(), self.labels.health()}
        log_status = next((s for s in (logstore.FAILING, logstore.RETRYING) if s in health), logstore.OK)
        ready = self.slots.champion is not None and log_status != logstore.FAILING
        status.update(
            ready=ready,
            mode=self.serving.mode,
            prediction_log={
                "uri": self.serving.prediction_log_uri,
                "status": log_status,
                "write_ahead_dir": str(self.wal_dir) if self.wal_dir is not None else None,
                **_writer_status(self.predictions),
                "labels": _writer_status(self.labels),
            },
        )
        return ready, status


def _writer_status(writer: logstore.PartitionWriter) -> dict[str, Any]:
    return {
        "status": writer.health(),
        "written_rows": writer.written_rows,
        "pending_rows": writer.pending_rows(),
        "dropped_rows": writer.dropped_rows,
        "dead_letter_rows": writer.dead_letter_rows,
        "last_error": writer.last_error or writer.wal_error,
    }


