"""A client of the serving app that plays production traffic: predictions, then their ground truth.

The demo and the end-to-end tests drive the loop through it the way callers would, over HTTP.
`simulate_traffic` makes that traffic for any bundled model (churn's classes, spend's amounts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from mlops.local.simulate import DriftLevel, DriftSpec, dataset_for_target
from mlops.serving.auth import API_KEY_HEADER

if TYPE_CHECKING:
    from mlops.config import PipelineConfig


@dataclass(frozen=True)
class Traffic:
    """Requests a model's callers would send (its feature columns only) and their later ground truth."""

    features: pd.DataFrame
    labels: pd.Series  # aligned with `features`: classes for a classifier, amounts for a regressor


def simulate_traffic(
    model: PipelineConfig | str,
    rows: int,
    drift: DriftLevel | DriftSpec = "none",
    seed: int = 0,
    start: str = "2026-01-01",
    catalogue: str | Path = "configs",
) -> Traffic:
    """Traffic for `model` (its config, or its name in `catalogue`), from the simulator of its target.

    The features are what /predict accepts (no target, no event time); the labels are what
    /labels later receives for the same rows.
    """
    if isinstance(model, str):
        from mlops.catalogue import load_catalogue

        model = load_catalogue(catalogue).get(model).config
    target, timestamp = model.dataset.target, model.dataset.timestamp
    frame = dataset_for_target(target).simulate(rows, drift, seed=seed, start=start)
    features = frame.drop(columns=[c for c in (target, timestamp) if c])
    return Traffic(features=features, labels=frame[target])


@dataclass
class TrafficLog:
    """What was answered: per request its id and which rows of the frame it carried; the failures."""

    requests: list[tuple[str, int, int]] = field(default_factory=list)  # (request_id, first row, rows)
    failed: int = 0
    versions: set[str] = field(default_factory=set)

    @property
    def rows(self) -> int:
        return sum(n for _, _, n in self.requests)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # Through JSON so timestamps and numpy scalars become what a caller would send.
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _route(model: str | None, action: str) -> str:
    """`/models/<model>/<action>`, or the default model's `/<action>`."""
    return f"/models/{model}/{action}" if model else f"/{action}"


def send_predictions(
    client: httpx.Client, frame: pd.DataFrame, batch_rows: int = 50, api_key: str | None = None,
    model: str | None = None,
) -> TrafficLog:
    """POST `frame` (the model's feature columns only: the app refuses others) in batches to
    `/models/<model>/predict`, or to the default model's /predict."""
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    log = TrafficLog()
    for start in range(0, len(frame), batch_rows):
        chunk = frame.iloc[start:start + batch_rows]
        response = client.post(_route(model, "predict"), json={"records": _records(chunk)}, headers=headers)
        if response.status_code != 200:
            log.failed += 1
            continue
        body = response.json()
        log.requests.append((body["request_id"], start, len(chunk)))
        log.versions.add(str(body["model_version"]))
    return log


def send_labels(
    client: httpx.Client, log: TrafficLog, labels: pd.Series, batch_rows: int = 500, api_key: str | None = None,
    model: str | None = None,
) -> int:
    """POST the ground truth of every answered row (`labels` aligned with the frame that was sent)."""
    headers = {API_KEY_HEADER: api_key} if api_key else {}
    values = labels.tolist()
    items = [
        {"request_id": request_id, "row": row, "label": values[first + row]}
        for request_id, first, rows in log.requests
        for row in range(rows)
    ]
    sent = 0
    for start in range(0, len(items), batch_rows):
        chunk = items[start:start + batch_rows]
        response = client.post(_route(model, "labels"), json={"labels": chunk}, headers=headers)
        response.raise_for_status()
        sent += len(chunk)
    return sent
