"""Serving a store-fed model by entity key: its features come from the online store, not the request.

A model whose config sets `dataset.feature_service` also accepts ``{"entities": [{"customer_id": 123},
...]}`` on /predict and /models/{name}/predict. Each entity record holds the service's join keys and
may hold request-time fields: features of the model's contract, merged over (or added to) the
looked-up ones. The request is checked before it waits for a batch (a wrong join key type, an
unknown field or a missing request-time feature is a 422 for the whole request, like a bad record
today); then the micro-batcher merges concurrent requests and `score_entities` makes ONE online
lookup for the whole batch, checks each merged row against the model's data contract, and scores
the rows that passed in one predict call.

What the store cannot answer is answered per record, never failing the others: an entity the
online store has never seen (`unknown_entity`), a feature older than its view's TTL (`stale`), a
view with no value for a known entity (`missing_feature`), or a stored value the contract refuses
(`invalid_feature`). Such a record gets a null prediction, its status and a message; it is not
scored (a stale value would be scored as if current) and not logged.

The store is opened once per model, off the event loop, and kept (`EntitySource`); the adapter
(mlops.features) is the only code that speaks Feast.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.errors import MlopsError
from mlops.features.store import INT64_RANGE, ROW_OK, RowStatus
from mlops.serving.payload import ENTITIES_KEY, PayloadError, describe, shown_name
from mlops.serving.scoring import LoadedModel, Scores

if TYPE_CHECKING:
    from mlops.features import ServiceSchema

log = logging.getLogger(__name__)

# A stored value the model's contract refuses: the store's fault, not the caller's, so per record.
ROW_INVALID_FEATURE = "invalid_feature"
_KEY_WORDS = {int: "an integer", str: "a string"}


class EntitySource:
    """One store-fed model's feature service: the Feast store opened once and kept, its schema read once.

    `ready` opens it in a worker thread on first use (reading the registry is file or network
    I/O); a failure is raised to the request that asked, and the next request tries again.
    """

    def __init__(self, repo: str | Path, home: str | Path, feature_service: str) -> None:
        self.repo = Path(repo)
        self.home = Path(home)
        self.feature_service = feature_service
        self.store: Any = None
        self.schema: ServiceSchema | None = None
        self.last_error: str | None = None
        self._lock = asyncio.Lock()
        self._frozen = False

    async def ready(self) -> ServiceSchema:
        """The service's schema, opening the store first if it is not open yet (raises MlopsError)."""
        if self.schema is not None:
            return self.schema
        async with self._lock:
            if self.schema is None:
                try:
                    self.store, self.schema = await asyncio.to_thread(self._open)
                except Exception as err:
                    self.last_error = str(err)
                    raise
                self.last_error = None
                log.info("feature service %s opened from %s", self.feature_service, self.repo)
        return self.schema

    def _open(self) -> tuple[Any, ServiceSchema]:
        from mlops import features

        store = features.open_store(self.repo, self.home)
        return store, features.describe_service(store, self.feature_service)

    def lookup(self, entity_rows: list[dict[str, Any]]) -> Any:
        """One batched online lookup (mlops.features.OnlineFeatures); only after `ready`."""
        from mlops import features

        assert self.schema is not None
        online = features.online_features(self.store, self.schema, entity_rows)
        if not self._frozen:
            # Feast, the modules its first read imports and the store's client live as long as the
            # process, and they come after the model's gc.freeze() (state.py): left in the
            # collector's oldest generation (~50,000 objects), every full collection under load
            # walked them, 60-115 ms pauses several times per 8 s of benchmark, the app's p99.
            gc.freeze()
            self._frozen = True
        return online


def check_entities(
    records: list[dict[str, Any]], schema: ServiceSchema, model: LoadedModel
) -> list[dict[str, Any]]:
    """Entity records with their join keys checked and their request-time fields coerced to the contract.

    Raises PayloadError (422) naming the record and field: a missing or mistyped join key, a field
    that is neither a join key nor a feature of the model, or a feature of the model the service
    does not serve and the record does not give.
    """
    names = model.validator.names
    served = set(schema.views)
    request_time = [name for name in names if name not in served]
    known = set(names)
    out = []
    for index, record in enumerate(records):
        for key, types in schema.join_keys.items():
            if key not in record:
                raise PayloadError(
                    422, f"record {index}: missing join key '{key}' of feature service '{schema.name}'",
                    "missing_field", record=index, field=key,
                )
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, types):
                wanted = " or ".join(_KEY_WORDS.get(t, t.__name__) for t in types)
                raise PayloadError(
                    422, f"record {index}: join key '{key}' must be {wanted}, got {describe(value)}",
                    "invalid_type", record=index, field=key,
                )
            if isinstance(value, int):
                low, high = schema.key_ranges.get(key, INT64_RANGE)
                if not low <= value <= high:
                    raise PayloadError(
                        422, f"record {index}: join key '{key}' must be an integer from {low} to {high} "
                        f"(what the feature store holds), got {describe(value)}",
                        "out_of_range", record=index, field=key,
                    )
        fields = {name: value for name, value in record.items() if name not in schema.join_keys}
        for name in fields:
            if name not in known:
                raise PayloadError(
                    422, f"record {index}: unknown field '{shown_name(name)}' (neither a join key of feature "
                    f"service '{schema.name}' nor a feature of this model)", "unknown_field", record=index, field=str(name),
                )
        for name in request_time:
            if name not in fields:
                raise PayloadError(
                    422, f"record {index}: missing field '{name}' (a feature of this model that feature "
                    f"service '{schema.name}' does not serve)", "missing_field", record=index, field=name,
                )
        clean = {key: record[key] for key in schema.join_keys}
        clean.update(model.validator.validate_fields(index, fields))
        out.append(clean)
    return out


def not_store_fed(name: str) -> PayloadError:
    """422 for `entities` sent to a model whose features come with the request."""
    return PayloadError(
        422, f"model '{shown_name(name)}' is not fed from a feature store (no dataset.feature_service): "
        f"send 'records' with every feature instead of '{ENTITIES_KEY}'", "not_store_fed", field=ENTITIES_KEY,
    )


@dataclass(frozen=True)
class EntityScores:
    """A micro-batch of entity records: predictions (None where not scored), statuses, the features used.

    `features[i]` is the validated feature record row i was scored on (None where not scored): what
    the prediction log keeps, so drift checks see the looked-up values.
    """

    predictions: list[Any]
    probabilities: list[list[float] | None] | None
    classes: list[Any] | None
    statuses: list[RowStatus]
    features: list[dict[str, Any] | None]

    def slice(self, start: int, stop: int) -> EntityScores:
        probabilities = self.probabilities[start:stop] if self.probabilities is not None else None
        return EntityScores(
            self.predictions[start:stop], probabilities, self.classes,
            self.statuses[start:stop], self.features[start:stop],
        )


def score_entities(model: LoadedModel, source: EntitySource, records: list[dict[str, Any]]) -> EntityScores:
    """A micro-batch's predict call: ONE online lookup for all its records, then checks and scoring.

    It runs on the event loop like any predict call: run in a worker thread instead, the lookup
    (mostly Feast's own Python) contended for the GIL with the loop, and throughput by entity fell
    (benchmarks/features.py, four alternating runs: 0.56-0.62 of the records baseline in a thread,
    0.60-0.71 on the loop). A failed lookup raises FeatureStoreUnavailable when the store does not
    answer and FeatureLookupFailed for any other failure: either is the store's, never the model's.
    """
    try:
        online = source.lookup(entity_keys(source, records))
    except MlopsError:
        raise
    except Exception as err:
        # Feast's own conversion or read failed on values the door let through: a fault of the
        # lookup, which must not count against the model version (a client could roll it back).
        raise FeatureLookupFailed(f"online features: lookup failed ({type(err).__name__}: {_one_line(err)})") from err
    return score_looked_up(model, source, records, online)


class FeatureLookupFailed(MlopsError):
    """The online lookup failed for a reason other than the store being unreachable."""


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


def entity_keys(source: EntitySource, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert source.schema is not None
    keys = tuple(source.schema.join_keys)
    return [{key: record[key] for key in keys} for record in records]


def score_looked_up(model: LoadedModel, source: EntitySource, records: list[dict[str, Any]], online: Any) -> EntityScores:
    """Check each merged row of a looked-up micro-batch against the contract and score the good ones.

    `records` are `check_entities` output (join keys plus coerced request-time fields); request-time
    fields win over looked-up values, and a problem with a feature the record gives is no problem.
    """
    schema = source.schema
    assert schema is not None
    served = [name for name in model.validator.names if name in schema.views]
    statuses: list[RowStatus] = []
    used: list[dict[str, Any] | None] = []
    for row, record in enumerate(records):
        fields = {name: value for name, value in record.items() if name not in schema.join_keys}
        found = online.row_status(row, fields)
        if not found.ok:
            statuses.append(found)
            used.append(None)
            continue
        merged = {name: online.columns[name][row] for name in served}
        merged.update(fields)
        try:
            [clean] = model.validator.validate([merged])
        except PayloadError as err:
            # The message names "record 0" of this one-row check: the store's value is to blame.
            reason = err.detail.split(": ", 1)[-1]
            feature = err.field
            view = schema.views.get(feature) if feature is not None else None
            statuses.append(RowStatus(
                ROW_INVALID_FEATURE, f"the online store's value does not fit the model's contract: {reason}", view, feature,
            ))
            used.append(None)
            continue
        statuses.append(RowStatus(ROW_OK))
        used.append(clean)
    good = [clean for clean in used if clean is not None]
    scores = model.score(good) if good else Scores([], [] if model.classes is not None else None, model.classes)
    predictions: list[Any] = [None] * len(records)
    probabilities: list[list[float] | None] | None = [None] * len(records) if scores.probabilities is not None else None
    answered = iter(range(len(good)))
    for row, clean in enumerate(used):
        if clean is None:
            continue
        at = next(answered)
        predictions[row] = scores.predictions[at]
        if probabilities is not None and scores.probabilities is not None:
            probabilities[row] = scores.probabilities[at]
    return EntityScores(predictions, probabilities, model.classes, statuses, used)


def record_errors(statuses: list[RowStatus]) -> list[dict[str, Any]]:
    """The records not scored, each as the app's error body (`detail`, `record`, `field`) plus `status` and `view`."""
    errors = []
    for index, status in enumerate(statuses):
        if status.status == "ok":
            continue
        error: dict[str, Any] = {"record": index, "status": status.status, "detail": f"record {index}: {status.detail}"}
        if status.feature is not None:
            error["field"] = status.feature
        if status.view is not None:
            error["view"] = status.view
        errors.append(error)
    return errors
