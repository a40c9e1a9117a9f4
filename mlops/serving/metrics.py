"""Prometheus metrics of the serving app: names in one place, one registry per app.

Every series carries a `model` label (the catalogue name), so one app serving many models keeps
their counts apart; refusals that happen before any model is chosen (an unknown model name, a
missing key on /metrics) are counted under `model="-"` (`NO_MODEL`), never under a name the
client made up. The rollback watcher reads these names and labels from /metrics, so they are a
contract: change them only together with the watcher.

Each failed request is counted in exactly one place, by whose fault it is, because the
post-deployment watch and the rollout judge read `mlops_request_errors_total` as the version's
error rate and roll it back on it:

* `mlops_request_errors_total`: the model's own predict call raised (the only failures of a version);
* `mlops_rejected_requests_total{reason}`: the client's request was refused (4xx, or 503 before a
  champion is loaded);
* `mlops_service_errors_total{reason}`: a 5xx that is neither: the feature store unreachable
  (`feature_store_unavailable`) or failing (`feature_store_error`), or a fault of the service's own
  code around the model (`internal_error`). Anyone can send a request, so nothing a request can
  cause outside the model may count against a version.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REQUESTS_TOTAL = "mlops_requests_total"
REQUEST_ERRORS_TOTAL = "mlops_request_errors_total"
REJECTED_REQUESTS_TOTAL = "mlops_rejected_requests_total"
SERVICE_ERRORS_TOTAL = "mlops_service_errors_total"
REQUEST_LATENCY_SECONDS = "mlops_request_latency_seconds"
MODEL_INFO = "mlops_model_info"
BATCH_ROWS = "mlops_batch_rows"
PREDICTION_LOG_ERRORS_TOTAL = "mlops_prediction_log_errors_total"
DEAD_LETTER_ROWS_TOTAL = "mlops_prediction_log_dead_letter_rows_total"

LABEL_MODEL = "model"
LABEL_VERSION = "model_version"
NO_MODEL = "-"

ROUTE_CHAMPION = "champion"
ROUTE_CANARY = "canary"
ROUTE_SHADOW = "shadow"

# Fine-grained where a healthy service lives (1-100 ms), coarse beyond, so a p99 read from the
# buckets is accurate to a few milliseconds where rollback thresholds sit.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025,
    0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """The app's metrics on a private CollectorRegistry, so two apps in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (LABEL_MODEL, LABEL_VERSION, "route")
        self.requests = Counter(
            REQUESTS_TOTAL, "Prediction requests routed to a model", labels, registry=self.registry
        )
        self.errors = Counter(
            REQUEST_ERRORS_TOTAL, "Routed requests whose model predict call failed (500): the version's failures",
            labels, registry=self.registry,
        )
        self.rejected = Counter(
            REJECTED_REQUESTS_TOTAL, "Requests refused before prediction (4xx)", (LABEL_MODEL, "reason"),
            registry=self.registry,
        )
        self.service_errors = Counter(
            SERVICE_ERRORS_TOTAL, "Requests failed (5xx) outside the model: feature store or the service's own code",
            (LABEL_MODEL, "reason"), registry=self.registry,
        )
        self.latency = Histogram(
            REQUEST_LATENCY_SECONDS, "Time from request received to response ready", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.model_info = Gauge(
            MODEL_INFO, "1 for each model version loaded, by alias", (LABEL_MODEL, "alias", "version"),
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            BATCH_ROWS, "Rows per model predict call (micro-batch size)", (LABEL_MODEL, LABEL_VERSION),
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.log_errors = Counter(
            PREDICTION_LOG_ERRORS_TOTAL,
            "Failed writes of the prediction or label log (destination, write-ahead segment or writer step)",
            (LABEL_MODEL, "store"), registry=self.registry,
        )
        self.dead_letters = Counter(
            DEAD_LETTER_ROWS_TOTAL, "Logged rows that could not be stored as Parquet, sent to a dead-letter file",
            (LABEL_MODEL, "store"), registry=self.registry,
        )

    def for_model(self, model: str) -> ModelMetrics:
        """The series of one model (the serving app keeps one per catalogue model)."""
        return ModelMetrics(self, model)

    def reject(self, reason: str, model: str = NO_MODEL) -> None:
        self.rejected.labels(model, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """One model's view of the app's metrics: every call fills in its `model` label."""

    def __init__(self, metrics: ServingMetrics, model: str) -> None:
        self.app = metrics
        self.model = model
        self._children: dict[tuple[str, str], tuple[Counter, Counter, Histogram]] = {}

    def _series(self, version: str, route: str) -> tuple[Counter, Counter, Histogram]:
        # .labels() takes a lock and a dict lookup per call; the hot path reuses the children.
        key = (version, route)
        found = self._children.get(key)
        if found is None:
            app, model = self.app, self.model
            found = (
                app.requests.labels(model, version, route),
                app.errors.labels(model, version, route),
                app.latency.labels(model, version, route),
            )
            self._children[key] = found
        return found

    def observe(self, version: str, route: str, seconds: float, failed: bool) -> None:
        """Count one routed request, its latency, and whether it failed."""
        requests, errors, latency = self._series(version, route)
        requests.inc()
        latency.observe(seconds)
        if failed:
            errors.inc()

    def reject(self, reason: str) -> None:
        self.app.reject(reason, self.model)

    def service_error(self, reason: str) -> None:
        """A 5xx that is not the model's fault: never counted against its version."""
        self.app.service_errors.labels(self.model, reason).inc()

    def batch_histogram(self, version: str) -> Histogram:
        return self.app.batch_rows.labels(self.model, version)

    def log_error(self, store: str) -> None:
        self.app.log_errors.labels(self.model, store).inc()

    def dead_letter(self, store: str) -> Counter:
        return self.app.dead_letters.labels(self.model, store)

    def set_model(self, alias: str, old_version: str | None, new_version: str | None) -> None:
        """Move the model_info series of `alias` from the old version to the new one."""
        if old_version is not None:
            try:
                self.app.model_info.remove(self.model, alias, old_version)
            except KeyError:
                pass
        if new_version is not None:
            self.app.model_info.labels(self.model, alias, new_version).set(1)

    def render(self) -> bytes:
        """The whole app's metrics (every model's series)."""
        return self.app.render()
