"""Post-deployment watch: read the serving app's Prometheus metrics and judge the new champion.

Only the watched model's series count (label `model`, one serving app hosts many models, and
their version numbers overlap), and of those only the new champion's (label `model_version`),
summed over routes. Its errors are the model's own failures only: the serving app counts refusals,
client errors, feature-store failures and its own faults in other series (mlops.serving.metrics),
so no client can raise a version's error rate without the model failing. The verdict is
`breach` when, with at least `rollback.min_requests` requests in the window, the error rate or the p99
latency is over its bound; `healthy` when the window ends without that; `no-verdict` when too few
requests arrived or the service could not be read. An unreachable service is `no-verdict`, never a
breach: the watch cannot tell a broken model from a broken network or a service that is not deployed
yet, and rolling back on silence would undo every promotion made while the service is down.
Parsing and judging are pure; `fetch_metrics` is the only I/O (httpx).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mlops.config import RollbackConfig, Settings
from mlops.serving import metrics as serving_metrics

# The serving app's metric and label names (it exports them; the watch reads them).
# The serving app owns the metric names; reading them from there keeps the two from drifting apart.
REQUESTS_TOTAL = serving_metrics.REQUESTS_TOTAL
ERRORS_TOTAL = serving_metrics.REQUEST_ERRORS_TOTAL
LATENCY_SECONDS = serving_metrics.REQUEST_LATENCY_SECONDS
LABEL_VERSION = serving_metrics.LABEL_VERSION
LABEL_MODEL = serving_metrics.LABEL_MODEL

VERDICT_BREACH = "breach"
VERDICT_HEALTHY = "healthy"
VERDICT_NONE = "no-verdict"

P99 = 0.99


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one model version, summed over routes."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound `le` in seconds, cumulative count)

    def bucket_map(self) -> dict[float, float]:
        return dict(self.buckets)


def _counters(requests: float, errors: float, buckets: dict[float, float]) -> Counters:
    return Counters(requests, errors, tuple(sorted(buckets.items())))


def parse_counters(text: str, version: str, model: str) -> Counters:
    """Model `model` version `version`'s request, error and latency-bucket counters from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get(LABEL_VERSION) != str(version) or sample.labels.get(LABEL_MODEL) != model:
                continue
            if sample.name == REQUESTS_TOTAL:
                requests += sample.value
            elif sample.name == ERRORS_TOTAL:
                errors += sample.value
            elif sample.name == f"{LATENCY_SECONDS}_bucket" and "le" in sample.labels:
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return _counters(requests, errors, buckets)


def increase(before: Counters, after: Counters) -> Counters:
    """What happened between two scrapes; a counter that went down restarted from 0 (Prometheus' rule)."""
    old, new = before.bucket_map(), after.bucket_map()
    reset = (
        after.requests < before.requests
        or after.errors < before.errors
        or any(new.get(le, 0.0) < count for le, count in old.items())
    )
    if reset:
        return after
    return _counters(
        after.requests - before.requests,
        after.errors - before.errors,
        {le: count - old.get(le, 0.0) for le, count in new.items()},
    )


def combine(a: Counters, b: Counters) -> Counters:
    ma, mb = a.bucket_map(), b.bucket_map()
    return _counters(
        a.requests + b.requests, a.errors + b.errors, {le: ma.get(le, 0.0) + mb.get(le, 0.0) for le in ma.keys() | mb.keys()}
    )


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket holding the rank; None without data."""
    if not buckets or not math.isinf(buckets[-1][0]):
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                # The rank is above every finite bound: the largest finite bound is all we know.
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


@dataclass(frozen=True)
class WindowStats:
    """Requests, errors, error rate and p99 latency of the new champion over the watch window."""

    requests: float
    errors: float
    error_rate: float | None
    p99_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_stats(delta: Counters) -> WindowStats:
    rate = delta.errors / delta.requests if delta.requests > 0 else None
    p99 = histogram_quantile(P99, delta.buckets)
    return WindowStats(
        requests=delta.requests,
        errors=delta.errors,
        error_rate=None if rate is None else round(rate, 6),
        p99_ms=None if p99 is None else round(p99 * 1000.0, 3),
    )


@dataclass(frozen=True)
class WatchVerdict:
    """The watch's conclusion about one version, with the numbers behind it."""

    verdict: str  # breach | healthy | no-verdict
    reason: str
    version: str
    stats: WindowStats | None = None
    scrapes: int = 0
    failed_scrapes: int = 0

    @property
    def breached(self) -> bool:
        return self.verdict == VERDICT_BREACH

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stats"] = None if self.stats is None else self.stats.to_dict()
        return out


def breaches(stats: WindowStats, policy: RollbackConfig) -> list[str]:
    """Which bounds the window broke; judged only with at least `min_requests` requests."""
    if stats.requests < policy.min_requests:
        return []
    found = []
    if stats.error_rate is not None and stats.error_rate > policy.max_error_rate:
        found.append(f"error rate {stats.error_rate:.4f} > max {policy.max_error_rate:g} ({stats.errors:g} of {stats.requests:g} requests)")
    if stats.p99_ms is not None and stats.p99_ms > policy.max_p99_ms:
        found.append(f"p99 latency {stats.p99_ms:.1f} ms > max {policy.max_p99_ms:g} ms")
    return found


def judge(stats: WindowStats, policy: RollbackConfig, version: str, scrapes: int = 0, failed: int = 0) -> WatchVerdict:
    """The verdict on a finished window."""
    found = breaches(stats, policy)
    if found:
        return WatchVerdict(VERDICT_BREACH, f"v{version}: " + "; ".join(found), version, stats, scrapes, failed)
    if stats.requests < policy.min_requests:
        reason = f"v{version}: only {stats.requests:g} requests in the window (min {policy.min_requests}); no verdict"
        return WatchVerdict(VERDICT_NONE, reason, version, stats, scrapes, failed)
    return WatchVerdict(
        VERDICT_HEALTHY, f"v{version}: within bounds over {stats.requests:g} requests", version, stats, scrapes, failed
    )


def fetch_metrics(service_url: str, api_key: str | None = None, timeout: float = 5.0) -> str | None:
    """GET {service_url}/metrics; None when the service cannot be reached or answers with an error.

    `api_key` is sent as X-API-Key: with the serving app's optional auth on, /metrics needs it too.
    """
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.get(f"{service_url.rstrip('/')}/metrics", headers=headers, timeout=timeout)
        response.raise_for_status()
    except (httpx.HTTPError, OSError):
        return None
    return response.text


def watch_service(
    settings: Settings, model: str, version: str, policy: RollbackConfig, window_seconds: float
) -> WatchVerdict:
    """Watch the serving app Settings names, sending Settings' API key: no config chooses either.

    The key goes only to MLOPS_SERVING_URL (or the local stack's serving app), never to an address
    from the pipeline config, which anyone who can edit a deployment's parameters controls.
    """
    url, api_key = settings.watched_serving_url, settings.serving_api_key()
    return watch_version(lambda: fetch_metrics(url, api_key), model, version, policy, window_seconds, where=url)


def watch_version(
    fetch: Callable[[], str | None],
    model: str,
    version: str,
    policy: RollbackConfig,
    window_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    where: str = "the service",
) -> WatchVerdict:
    """Scrape every `poll_seconds` for `window_seconds`; stop early on a breach.

    The first scrape is the baseline; when it fails the watch ends at once with no verdict. Later
    failed scrapes are skipped. Increases are summed scrape to scrape, so a service restart
    mid-window loses nothing.
    """
    start = clock()
    scrapes = failed = 0
    last: Counters | None = None
    total = Counters()

    def scrape() -> Counters | None:
        nonlocal scrapes, failed
        scrapes += 1
        text = fetch()
        if text is None:
            failed += 1
            return None
        try:
            return parse_counters(text, version, model)
        except ValueError:  # not Prometheus text: treat like an unreachable service
            failed += 1
            return None

    while True:
        current = scrape()
        if current is None and scrapes == 1:
            # Down (or not deployed) from the start: waiting out the window would only delay the run.
            break
        if current is not None:
            if last is not None:
                total = combine(total, increase(last, current))
                stats = window_stats(total)
                if breaches(stats, policy):
                    return judge(stats, policy, version, scrapes, failed)
            last = current
        remaining = window_seconds - (clock() - start)
        if remaining <= 0:
            break
        sleep(min(policy.poll_seconds, remaining))
    if scrapes - failed < 2:
        reason = (
            f"v{version}: service unreachable at {where} ({failed} of {scrapes} scrapes failed); "
            "no verdict, champion kept"
        )
        return WatchVerdict(VERDICT_NONE, reason, version, None, scrapes, failed)
    return judge(window_stats(total), policy, version, scrapes, failed)
