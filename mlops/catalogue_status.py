"""`mlops catalogue`: each model of the catalogue with where its loop stands.

Read from where each fact lives: champion and challenger from the registry's aliases, the last
drift check from the model's monitoring experiment, the last retrain from its audit trail, and the
serving state from the serving app's `/ready`. A source that cannot be read says so in its column
instead of failing the listing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mlops.catalogue import Catalogue
from mlops.registry import ALIAS_CHALLENGER, ALIAS_CHAMPION
from mlops.retraining import last_retrain_finished

__all__ = ["ModelStatus", "fetch_ready", "model_statuses", "render_statuses", "serving_state"]

UNKNOWN = "unknown"


class _Registry(Protocol):
    def version_by_alias(self, name: str, alias: str) -> Any: ...
    def latest_run(self, experiment: str) -> dict[str, Any] | None: ...
    def read_audit(self, name: str) -> list[Any]: ...


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str
    config_file: str
    champion: str | None
    challenger: str | None
    last_drift_check: str | None
    drift_detected: bool | None
    last_retrain: str | None
    serving: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="seconds")


def serving_state(ready: dict[str, Any] | None, name: str) -> str:
    """One word or short phrase for the model's state in the serving app's /ready body."""
    if ready is None:
        return "unreachable"
    entry = (ready.get("catalogue") or {}).get(name)  # the app's summary per model
    if entry is not None:
        version = entry.get("champion")
    elif ready.get("model_name") == name:  # an app serving this one model only
        entry = ready
        version = ((ready.get("models") or {}).get("champion") or {}).get("version")
    else:
        return "not served"
    if entry.get("ready") and version:
        return f"serving v{version}"
    return "loaded on demand" if entry.get("loaded") is False else "not ready"


def fetch_ready(service_url: str, api_key: str | None = None, timeout: float = 3.0) -> dict[str, Any] | None:
    """The serving app's /ready body (200 or 503 both describe it); None when it cannot be reached."""
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.get(f"{service_url.rstrip('/')}/ready", headers=headers, timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, OSError, ValueError):
        return None
    return body if isinstance(body, dict) and response.status_code in (200, 503) else None


def _version(registry: _Registry, name: str, alias: str) -> str | None:
    ref = registry.version_by_alias(name, alias)
    return ref.version if ref is not None else None


def model_statuses(catalogue: Catalogue, registry: _Registry, ready: dict[str, Any] | None) -> list[ModelStatus]:
    statuses = []
    for name in catalogue.names:
        entry = catalogue.entries[name]
        try:
            champion, challenger = _version(registry, name, ALIAS_CHAMPION), _version(registry, name, ALIAS_CHALLENGER)
            check = registry.latest_run(f"{name}-monitoring")
            retrained = last_retrain_finished(registry.read_audit(name))
        except Exception:  # the registry is down: the listing still names every model
            champion = challenger = UNKNOWN
            check, retrained = None, None
        drift = (check or {}).get("metrics", {}).get("dataset_drift")
        statuses.append(ModelStatus(
            name=name, task=entry.config.model.task, config_file=str(entry.path), champion=champion,
            challenger=challenger, last_drift_check=_iso_ms((check or {}).get("start_time")),
            drift_detected=None if drift is None else bool(drift),
            last_retrain=retrained.isoformat(timespec="seconds") if retrained else None,
            serving=serving_state(ready, name),
        ))
    return statuses


def render_statuses(statuses: list[ModelStatus]) -> str:
    header = ("model", "task", "champion", "challenger", "last drift check", "last retrain", "serving")
    rows = [header] + [
        (s.name, s.task, f"v{s.champion}" if s.champion and s.champion != UNKNOWN else (s.champion or "-"),
         f"v{s.challenger}" if s.challenger and s.challenger != UNKNOWN else (s.challenger or "-"),
         (s.last_drift_check or "never") + (" (drift)" if s.drift_detected else ""),
         s.last_retrain or "never", s.serving)
        for s in statuses
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows)
