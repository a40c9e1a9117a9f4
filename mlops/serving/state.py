"""One model of the serving app: its models, router, logs, metrics; and the /predict logic itself.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from mlops.config import PipelineConfig, Settings
from mlops.contract import DataContract
from mlops.errors import FeatureStoreUnavailable, MlopsError
from mlops.promotion.split import ALIAS_ROLLOUT, TrafficSplit
from mlops.registry import ALIAS_CHAMPION
from mlops.serving import auth, logstore
from mlops.serving.batching import MicroBatcher
from mlops.serving.entities import (
    EntityScores,
    EntitySource,
    check_entities,
    not_store_fed,
    record_errors,
    score_entities,
)
from mlops.serving.metrics import ROUTE_CANARY, ROUTE_SHADOW, ServingMetrics
from mlops.serving.models import SLOT_CHAMPION, ModelSlots, RegistryLike
from mlops.serving.payload import (
    ENTITIES_KEY,
    PayloadError,
    check_content_type,
    parse_labels,
    parse_request,
)
from mlops.serving.prediction_log import (
    label_columns,
    label_writer,
    logged_feature_columns,
    model_log_uri,
    prediction_columns,
    prediction_writer,
)
from mlops.serving.routing import Router
from mlops.serving.scoring import LoadedModel, Scores

if TYPE_CHECKING:
    from mlops.serving.memory import LoadedModels

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer before it is encoded."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)  # not frozen: built once per request, and frozen __init__ costs more
class Scored:
    """One answered request before it is encoded: the model that answered and its scores."""

    request_id: str
    model: LoadedModel
    alias: str
    route: str
    scores: Scores | EntityScores


class ModelService:
    """One catalogue model in the serving app: its alias slots, router, batchers, log writers and metrics.

    Built for every catalogue model when the app is built; its champion is loaded on demand
    (`activate`, by the app's LoadedModels) and dropped again when evicted (`deactivate`).
    """

    def __init__(
        self,
        config: PipelineConfig,
        registry_factory: Callable[[], RegistryLike],
        settings: Settings,
        metrics: ServingMetrics,
        on_swap: Callable[[ModelService], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.model.name
        self.serving = serving = config.serving
        self.metrics = metrics.for_model(self.name)
        self.router = Router(serving.mode, serving.canary_share)
        self.api_key = settings.serving_api_key()
        self.canary_alias = serving.canary_alias if serving.mode != "champion" else None
        self.slots = ModelSlots(
            registry_factory, self.name, ALIAS_CHAMPION, self.canary_alias, on_swap=self._on_swap,
            on_split=self._on_split,
        )
        self._notify_swap = on_swap
        # The partition of this model: its rows, its write-ahead segments and its dead letters.
        self.log_uri = model_log_uri(serving.prediction_log_uri, self.name)
        self.wal_dir = settings.serving_wal_path()
        self.predictions = prediction_writer(
            self.log_uri, self.wal_dir, settings.serving_wal_fsync,
            on_error=lambda _: self.metrics.log_error("predictions"),
            on_dead_letter=self.metrics.dead_letter("predictions").inc,
            retry_window=settings.serving_log_retry_seconds,
        )
        self.labels = label_writer(
            self.log_uri, self.wal_dir, settings.serving_wal_fsync,
            on_error=lambda _: self.metrics.log_error("labels"),
            on_dead_letter=self.metrics.dead_letter("labels").inc,
            retry_window=settings.serving_log_retry_seconds,
        )
        self._batchers: weakref.WeakKeyDictionary[LoadedModel, MicroBatcher] = weakref.WeakKeyDictionary()
        self._entity_batchers: weakref.WeakKeyDictionary[LoadedModel, MicroBatcher] = weakref.WeakKeyDictionary()
        # A store-fed model (dataset.feature_service) also answers entity keys: its feature store,
        # opened once when the model is first loaded (or by the first entity request) and kept.
        dataset = config.dataset
        self.entities = (
            EntitySource(dataset.feature_repo, settings.home, dataset.feature_service)
            if dataset.feature_service else None
        )
        self._background: set[asyncio.Task[None]] = set()
        # On-demand loading: the task that loads the champion (None: not loaded, or evicted) and
        # the one that keeps it fresh; `in_flight` requests pin the model against eviction.
        self.activation: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.loads = 0
        self.memory: LoadedModels | None = None
        # The contract of the last champion seen, kept after eviction: the OpenAPI document needs it.
        self.contract: DataContract | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start_logs(self) -> None:
        self.predictions.start()
        self.labels.start()

    async def close(self) -> None:
        """Stop refreshing, let shadow scorings finish, write the last rows (uvicorn has drained requests)."""
        await self.deactivate()
        if self._background:
            await asyncio.wait(self._background, timeout=30)
        await asyncio.to_thread(self.predictions.close)
        await asyncio.to_thread(self.labels.close)

    @property
    def active(self) -> bool:
        """Loaded, or being loaded: its refresher runs and its champion (once in) answers."""
        return self.activation is not None

    async def activate(self) -> None:
        """Load the champion (and canary) now, then keep them fresh in the background."""
        self.loads += 1
        await self.slots.refresh()
        self._refresher = asyncio.get_running_loop().create_task(self.slots.run_forever(self.serving.refresh_seconds))
        if self.entities is not None and self.entities.schema is None:
            try:
                await self.entities.ready()
            except Exception as err:  # records still score; entity requests retry and answer 503 meanwhile
                log.warning("model %s: feature store not opened: %s", self.name, err)
            else:
                if self._notify_swap is not None:  # the OpenAPI document can now show the join keys
                    self._notify_swap(self)

    async def deactivate(self) -> None:
        """Drop the loaded versions (evicted or shutting down); the next request loads them again."""
        for task in (self.activation, self._refresher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.activation = self._refresher = None
        self.slots.unload()
        self._batchers = weakref.WeakKeyDictionary()
        self._entity_batchers = weakref.WeakKeyDictionary()

    def _on_swap(self, slot: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        alias = ALIAS_CHAMPION if slot == SLOT_CHAMPION else self.canary_alias or slot
        self.metrics.set_model(alias, old.version if old else None, new.version if new else None)
        if slot == SLOT_CHAMPION and new is not None:
            self.contract = new.contract
        if self._notify_swap is not None:
            self._notify_swap(self)
        # The libraries and the model live as long as the process: moving them out of the cyclic
        # collector's reach turns its full collections from ~200 ms pauses (every few seconds
        # under load, a p99 killer) into a few ms. Refcounting still frees a swapped-out model.
        gc.freeze()

    def _on_split(self, split: TrafficSplit | None) -> None:
        """A rollout moved (or ended): route as its split says, or as the config says again.

        Requests read the router and the canary alias once each, on the event loop, as this runs.
        """
        serving = self.serving
        if split is None:
            self.router = Router(serving.mode, serving.canary_share)
            self.canary_alias = serving.canary_alias if serving.mode != "champion" else None
        else:
            self.router = Router("shadow" if split.shadow else "canary", split.challenger_share)
            self.canary_alias = ALIAS_ROLLOUT
        log.info("model %s: routing %s", self.name,
                 "as configured" if split is None else f"v{split.version} at {split.describe_step()}")

    def batcher(self, model: LoadedModel) -> MicroBatcher:
        found = self._batchers.get(model)
        if found is None:
            found = MicroBatcher(
                model.score, self.serving.batch_max_rows, self.serving.batch_wait_ms / 1000.0,
                on_batch=self.metrics.batch_histogram(model.version).observe,
            )
            self._batchers[model] = found
        return found

    def entity_batcher(self, model: LoadedModel) -> MicroBatcher:
        """The micro-batcher of entity requests to `model`: one online lookup and one predict per batch."""
        found = self._entity_batchers.get(model)
        if found is None:
            source = self.entities
            assert source is not None
            found = MicroBatcher(
                lambda records: score_entities(model, source, records),
                self.serving.batch_max_rows, self.serving.batch_wait_ms / 1000.0,
                on_batch=self.metrics.batch_histogram(model.version).observe,
            )
            self._entity_batchers[model] = found
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
            key, records = parse_request(await self.read_body(request), self.serving.max_rows)
        except PayloadError as err:
            return self.refuse(err)
        by_entity = key == ENTITIES_KEY
        if by_entity and self.entities is None:
            return self.refuse(not_store_fed(self.name))
        outcome = await self.score(records, request.headers.get(self.serving.sticky_header), started, by_entity)
        if isinstance(outcome, Reply):
            return outcome
        scores, model = outcome.scores, outcome.model
        body: dict[str, Any] = {"predictions": scores.predictions}
        if scores.probabilities is not None:
            body["probabilities"] = scores.probabilities
            body["classes"] = scores.classes
        if isinstance(scores, EntityScores):
            body["statuses"] = [status.status for status in scores.statuses]
            body["errors"] = record_errors(scores.statuses)
        body.update(model_version=model.version, model_alias=outcome.alias, route=outcome.route, request_id=outcome.request_id)
        return Reply(200, body, {REQUEST_ID_HEADER: outcome.request_id})

    async def use(self) -> None:
        """Make sure the champion is loaded (or being loaded, then wait for it); counts as a use for eviction."""
        memory = self.memory
        activation = self.activation
        if activation is not None and activation.done():
            if memory is not None:
                memory.touch(self)
            return
        if memory is not None:
            await memory.use(self)
        else:
            if activation is None:
                self.activation = activation = asyncio.get_running_loop().create_task(self.activate())
            await asyncio.shield(activation)

    async def score(
        self, records: list[dict[str, Any]], sticky_key: str | None, started: float, by_entity: bool = False
    ) -> Scored | Reply:
        """Validate `records` against the answering model's contract, score them in a micro-batch, log them.

        What /predict and the Open Inference Protocol's infer share: routing, validation,
        batching, the prediction log and the metrics. A Reply is a refusal or failure to send as is.
        With `by_entity` the records are entity keys of a store-fed model (mlops.serving.entities).
        """
        self.in_flight += 1  # pins this model against eviction until the answer is out
        try:
            activation = self.activation
            if activation is not None and activation.done() and self.memory is not None:
                self.memory.touch(self)  # loaded: the hot path, no extra coroutine
            else:
                await self.use()
            return await self._score(records, sticky_key, started, by_entity)
        finally:
            self.in_flight -= 1

    async def _score(
        self, records: list[dict[str, Any]], sticky_key: str | None, started: float, by_entity: bool = False
    ) -> Scored | Reply:
        # One read of each slot: a hot swap after this line does not affect this request.
        champion, canary = self.slots.champion, self.slots.canary
        if champion is None:
            self.metrics.reject("no_model")
            return Reply(503, {"detail": "no champion model loaded yet"})
        route = self.router.choose(sticky_key, canary is not None)
        if route == ROUTE_CANARY and canary is not None and self.canary_alias is not None:
            model, alias = canary, self.canary_alias
        else:
            model, alias = champion, ALIAS_CHAMPION
        if by_entity:
            return await self._score_entities(records, model, alias, route, canary, started)
        try:
            clean = model.validator.validate(records)
        except PayloadError as err:
            return self.refuse(err)
        request_id = uuid.uuid4().hex
        try:
            scores = await self.batcher(model).submit(clean)
        except Exception as err:
            return self._prediction_failed(err, "prediction", model, route, started, request_id)
        try:
            self.log_prediction(request_id, clean, scores, model, alias, route)
        except logstore.LogUnavailable as err:
            return self.unlogged(err)
        if self.router.shadows and canary is not None:
            self.spawn_shadow(canary, records, request_id)
        self.metrics.observe(model.version, route, time.perf_counter() - started, failed=False)
        return Scored(request_id, model, alias, route, scores)

    def _prediction_failed(
        self, err: Exception, what: str, model: LoadedModel, route: str, started: float, request_id: str,
    ) -> Reply:
        """A 500 for a scoring failure: logged with its traceback, counted against the model version."""
        log.error("%s failed (model %s v%s, request %s)", what, model.name, model.version, request_id, exc_info=err)
        self.metrics.observe(model.version, route, time.perf_counter() - started, failed=True)
        return Reply(
            500, {"detail": f"prediction failed ({type(err).__name__})", "request_id": request_id},
            {REQUEST_ID_HEADER: request_id},
        )

    async def _score_entities(
        self, records: list[dict[str, Any]], model: LoadedModel, alias: str, route: str,
        canary: LoadedModel | None, started: float,
    ) -> Scored | Reply:
        """Entity records: checked, then looked up and scored with their micro-batch; logs what was scored."""
        source = self.entities
        assert source is not None
        request_id = uuid.uuid4().hex
        try:
            schema = await source.ready()
            clean = check_entities(records, schema, model)
            scores: EntityScores = await self.entity_batcher(model).submit(clean)
        except PayloadError as err:
            return self.refuse(err)
        except FeatureStoreUnavailable as err:
            # The store's outage, not the model's: never an error of this model version.
            self.metrics.service_error("feature_store_unavailable")
            return Reply(503, {"detail": str(err)})
        except MlopsError as err:  # the feature service or repository is misconfigured, or the lookup failed
            log.warning("model %s: feature store failed (request %s): %s", self.name, request_id, err)
            self.metrics.service_error("feature_store_error")
            return Reply(500, {"detail": f"feature store: {err}", "request_id": request_id}, {REQUEST_ID_HEADER: request_id})
        except Exception as err:  # score_entities raised from the model's predict call (the lookup's are MlopsError)
            return self._prediction_failed(err, "prediction by entity", model, route, started, request_id)
        rows = [row for row, used in enumerate(scores.features) if used is not None]
        if rows:
            used = [scores.features[row] for row in rows]
            probabilities = scores.probabilities
            answered = Scores(
                [scores.predictions[row] for row in rows],
                [probabilities[row] for row in rows] if probabilities is not None else None,
                scores.classes,
            )
            try:
                self.log_prediction(request_id, used, answered, model, alias, route, rows)
            except logstore.LogUnavailable as err:
                return self.unlogged(err)
            if self.router.shadows and canary is not None:
                self.spawn_shadow(canary, used, request_id, rows)
        self.metrics.observe(model.version, route, time.perf_counter() - started, failed=False)
        return Scored(request_id, model, alias, route, scores)

    async def add_labels(self, request: Request) -> Reply:
        """Ground truth for earlier predictions, checked against the champion's classes."""
        if denied := self.denied(request):
            return denied
        await self.use()
        champion = self.slots.champion
        if champion is None:
            self.metrics.reject("no_model")
            return Reply(503, {"detail": "no champion model loaded yet; labels are checked against its classes"})
        try:
            items = parse_labels(await self.read_body(request), self.serving.max_rows, champion.contract)
        except PayloadError as err:
            return self.refuse(err)
        try:
            self.labels.append(label_columns(items, time.time()), len(items))
        except logstore.LogUnavailable as err:
            return self.unlogged(err)
        return Reply(200, {"accepted": len(items)})

    def unlogged(self, err: logstore.LogUnavailable) -> Reply:
        """A 503 for rows the log cannot keep (its write-ahead disk is full): never acknowledged.

        Refused, not failed: the model answered, so it is not counted against its version; the
        client may try again (another replica, or this one once the disk has room).
        """
        self.metrics.reject("log_unavailable")
        return Reply(503, {"detail": str(err)})

    def log_prediction(
        self, request_id: str, records: list[dict[str, Any]], scores: Scores, model: LoadedModel, alias: str, route: str,
        rows: list[int] | None = None,
    ) -> None:
        columns = prediction_columns(
            request_id, records, scores, model.name, model.version, alias, route, time.time(), rows,
        )
        self.predictions.append(columns, len(records), float_columns=logged_feature_columns(model.numeric_features))

    def spawn_shadow(
        self, model: LoadedModel, records: list[dict[str, Any]], request_id: str, rows: list[int] | None = None
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._shadow(model, records, request_id, rows))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shadow(
        self, model: LoadedModel, records: list[dict[str, Any]], request_id: str, rows: list[int] | None = None
    ) -> None:
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
        try:
            self.log_prediction(request_id, clean, scores, model, self.canary_alias or ROUTE_SHADOW, ROUTE_SHADOW, rows)
        except logstore.LogUnavailable:
            self.metrics.reject("shadow_log_unavailable")  # the caller has its answer; the writer logged why

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready: a champion is loaded and no log writer is FAILING (rows at risk, refused or stuck).

        A destination that refuses writes while the write-ahead segments hold every row is
        RETRYING and stays ready for the writers' retry window: a shared store's short outage must
        not take every replica out of service at once, and nothing is lost meanwhile. Past it the
        log is not moving, and a replica that keeps acknowledging rows nobody can read is not ready.
        """
        status = self.slots.status()
        health = {self.predictions.health(), self.labels.health()}
        log_status = next((s for s in (logstore.FAILING, logstore.RETRYING) if s in health), logstore.OK)
        ready = self.slots.champion is not None and log_status != logstore.FAILING
        status.update(
            ready=ready,
            loaded=self.active and self.slots.champion is not None,
            mode=self.serving.mode,
            prediction_log={
                "uri": self.log_uri,
                "status": log_status,
                "write_ahead_dir": str(self.wal_dir) if self.wal_dir is not None else None,
                **_writer_status(self.predictions),
                "labels": _writer_status(self.labels),
            },
        )
        if self.entities is not None:
            status["feature_store"] = {
                "feature_service": self.entities.feature_service,
                "open": self.entities.schema is not None,
                "last_error": self.entities.last_error,
            }
        return ready, status


def _writer_status(writer: logstore.PartitionWriter) -> dict[str, Any]:
    return {
        "status": writer.health(),
        "written_rows": writer.written_rows,
        "pending_rows": writer.pending_rows(),
        "dropped_rows": writer.dropped_rows,
        "dead_letter_rows": writer.dead_letter_rows,
        "waiting_seconds": writer.waiting_seconds(),
        # A refused append first: it is what makes requests fail now.
        "last_error": writer.wal_error or writer.last_error,
    }


