"""The prediction log and the ground-truth labels that are joined to it later.

The log is partitioned by model: each model's rows live under its own partition,
``<prediction_log_uri>/model=<name>`` (`model_log_uri`, the one rule every writer and reader
goes through), so one model's monitor window, retraining data and dead letters never hold
another model's rows, even when many models share one `serving.prediction_log_uri`. Below a
partition (``<partition>`` for short), predictions live under ``<partition>/date=.../part-*.parquet``,
one row per scored record; labels under ``<partition>/labels/date=.../part-*.parquet``; rows that
could not be stored as Parquet under ``<partition>/dead-letter/{predictions,labels}/date=.../
dead-*.jsonl``, one JSON line each with the reason (`count_dead_letters`). The readers below take
a partition; the drift monitor reads it with `read_prediction_log` (every row, shadow ones
included) and `read_labelled_predictions` (answered rows joined to their latest label).

Prediction rows have the columns in `LOG_COLUMNS` plus one column per model feature, under the
feature's own name, except that a feature named like a log or label column (`RESERVED_COLUMNS`) or
starting with ``feature.`` is stored as ``feature.<name>``: `logged_feature_column` is that one
mapping, used by the writer and every reader (`features_from_log`).
Numeric features are stored as floats; ``probabilities`` holds the per-class list for classifiers
(in the order of ``classes``, a JSON array string) and is null for regressors. In shadow mode a
request has two rows per record, one per route.
"""

from __future__ import annotations

import functools
import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
import pandas as pd

from mlops.serving import logstore, wal
from mlops.serving.logstore import TIMESTAMP, PartitionWriter
from mlops.serving.metrics import ROUTE_SHADOW

if TYPE_CHECKING:  # scoring pulls in scikit-learn; the log readers must stay light
    from mlops.serving.scoring import Scores

LABELS_DIR = "labels"
DEAD_LETTER_DIR = "dead-letter"
STORES = ("predictions", "labels")
LOG_COLUMNS = (
    "request_id", "row", TIMESTAMP, "model_name", "model_version", "model_alias", "route",
    "prediction", "probabilities", "classes",
)
LABEL_COLUMNS = ("request_id", "row", "label", "labelled_at")
# Column names a feature must not take in the log: the log's own, and those the label join adds.
RESERVED_COLUMNS = frozenset((*LOG_COLUMNS, *LABEL_COLUMNS))
FEATURE_PREFIX = "feature."
MODEL_PARTITION = "model="


def model_log_uri(log_uri: str, model_name: str) -> str:
    """The partition of `log_uri` that holds model `model_name`'s predictions, labels and dead letters.

    The one mapping from (log, model) to rows: the serving app writes there and every reader
    (monitor window, retraining data, dead-letter count) reads there. The name is percent-encoded,
    so a `/` or `..` in a model name cannot reach another model's partition.
    """
    return logstore.join(log_uri, f"{MODEL_PARTITION}{quote(model_name, safe='')}")


def logged_feature_column(name: str) -> str:
    """The log column holding feature `name`: its own name unless that is reserved or looks prefixed.

    Prefixing names that already start with ``feature.`` keeps the mapping one-to-one: features
    `prediction` and `feature.prediction` land in different columns, never in one.
    """
    return f"{FEATURE_PREFIX}{name}" if name in RESERVED_COLUMNS or name.startswith(FEATURE_PREFIX) else name


@functools.lru_cache(maxsize=64)
def logged_feature_columns(names: frozenset[str]) -> frozenset[str]:
    """`logged_feature_column` of each name (cached: the request path asks once per request)."""
    return frozenset(logged_feature_column(name) for name in names)


def features_from_log(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The features `names` out of prediction-log rows, under their own names (same index).

    Raises ValueError naming the first feature the log has no column for.
    """
    for name in names:
        if logged_feature_column(name) not in frame.columns:
            raise ValueError(f"the prediction log has no column for feature '{name}'")
    return pd.DataFrame({name: frame[logged_feature_column(name)] for name in names}, index=frame.index)


def labels_root(uri: str) -> str:
    return logstore.join(uri, LABELS_DIR)


def prediction_columns(
    request_id: str,
    records: list[dict[str, Any]],
    scores: Scores,
    model_name: str,
    model_version: str,
    model_alias: str,
    route: str,
    timestamp: float,
    rows: list[int] | None = None,
) -> dict[str, list[Any]]:
    """One answered request (or its shadow scoring) as log columns, one row per record.

    `rows` are the records' positions in the request when not all of them were scored (an entity
    request answers some records with a status instead): labels join on (request_id, row).
    """
    n = len(records)
    columns: dict[str, list[Any]] = {
        "request_id": [request_id] * n,
        "row": list(range(n)) if rows is None else rows,
        TIMESTAMP: [timestamp] * n,
        "model_name": [model_name] * n,
        "model_version": [model_version] * n,
        "model_alias": [model_alias] * n,
        "route": [route] * n,
        "prediction": scores.predictions,
        "probabilities": scores.probabilities if scores.probabilities is not None else [None] * n,
        # A JSON string, not a list: Parquet dictionary-encodes the repeats at almost no cost.
        "classes": [orjson.dumps(scores.classes).decode() if scores.classes is not None else None] * n,
    }
    for name in records[0] if records else ():
        columns[logged_feature_column(name)] = [record[name] for record in records]
    return columns


def label_columns(labels: list[tuple[str, int, Any]], timestamp: float) -> dict[str, list[Any]]:
    """Labels received together as log columns (partitioned by when they arrived)."""
    n = len(labels)
    return {
        "request_id": [rid for rid, _, _ in labels],
        "row": [row for _, row, _ in labels],
        "label": [label for _, _, label in labels],
        "labelled_at": [timestamp] * n,
        TIMESTAMP: [timestamp] * n,
    }


def dead_letter_root(uri: str, store: str) -> str:
    return logstore.join(uri, DEAD_LETTER_DIR, store)


def _segments(wal_dir: Path | None, uri: str, store: str, fsync: bool) -> wal.SegmentDir | None:
    return None if wal_dir is None else wal.SegmentDir(wal.destination_dir(wal_dir, uri) / store, fsync)


def prediction_writer(uri: str, wal_dir: Path | None = None, wal_fsync: bool = False, **options: Any) -> PartitionWriter:
    """The background writer of prediction rows under `uri` (write-ahead segments under `wal_dir`)."""
    return PartitionWriter(
        uri, time_columns=(TIMESTAMP,), name="prediction-log",
        segments=_segments(wal_dir, uri, "predictions", wal_fsync),
        dead_letter_root=dead_letter_root(uri, "predictions"), **options,
    )


def label_writer(uri: str, wal_dir: Path | None = None, wal_fsync: bool = False, **options: Any) -> PartitionWriter:
    """The background writer of labels under `uri`/labels (write-ahead segments under `wal_dir`)."""
    return PartitionWriter(
        labels_root(uri), time_columns=(TIMESTAMP, "labelled_at"), name="label-log",
        segments=_segments(wal_dir, uri, "labels", wal_fsync),
        dead_letter_root=dead_letter_root(uri, "labels"), **options,
    )


def _utc(value: datetime | date | str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_prediction_log(
    uri: str,
    since: datetime | date | str | pd.Timestamp | None = None,
    until: datetime | date | str | pd.Timestamp | None = None,
    client: Any | None = None,
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """Logged prediction rows with since <= timestamp < until (naive times are UTC), oldest first.

    Part files that cannot be parsed are left out; their URIs are appended to `skipped` when given.
    """
    start, end = _utc(since), _utc(until)
    files = logstore.list_files(
        uri, first=start.date() if start is not None else None, last=end.date() if end is not None else None,
        client=client,
    )
    frame = logstore.read_files(files, client=client, skipped=skipped)
    if frame.empty:
        return pd.DataFrame(columns=list(LOG_COLUMNS))
    if start is not None:
        frame = frame[frame[TIMESTAMP] >= start]
    if end is not None:
        frame = frame[frame[TIMESTAMP] < end]
    return frame.sort_values([TIMESTAMP, "request_id", "row"], kind="stable").reset_index(drop=True)


def read_labels(
    uri: str,
    client: Any | None = None,
    skipped: list[str] | None = None,
    since: datetime | date | str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Every label received (since the UTC date of `since`, when given), latest per (request_id, row) only."""
    start = _utc(since)
    files = logstore.list_files(labels_root(uri), first=start.date() if start is not None else None, client=client)
    frame = logstore.read_files(files, client=client, skipped=skipped)
    if frame.empty:
        return pd.DataFrame(columns=list(LABEL_COLUMNS))
    frame = frame.sort_values("labelled_at", kind="stable")
    return frame.drop_duplicates(["request_id", "row"], keep="last")[list(LABEL_COLUMNS)].reset_index(drop=True)


def read_labelled_predictions(
    uri: str,
    since: datetime | date | str | pd.Timestamp | None = None,
    until: datetime | date | str | pd.Timestamp | None = None,
    client: Any | None = None,
    include_shadow: bool = False,
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """Prediction rows that have a label, with `label` and `labelled_at` columns added.

    One row per (request_id, row) by default: the answer the caller got. Shadow scorings of the
    same rows are left out unless `include_shadow` (to judge a challenger on live labels), so
    that training on this frame never counts a shadowed request twice. A label arrives after its
    prediction, so only label partitions from the date of `since` on are read. Unreadable part
    files are left out and appended to `skipped` when given.
    """
    predictions = read_prediction_log(uri, since, until, client=client, skipped=skipped)
    labels = read_labels(uri, client=client, skipped=skipped, since=since)
    return join_labels(predictions, labels, include_shadow)


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, include_shadow: bool = False) -> pd.DataFrame:
    """Prediction rows (as `read_prediction_log` gives them) that have a label, with the label added.

    For a caller that already holds the window's rows: the log is read once, not once more here.
    """
    if not include_shadow and not predictions.empty:
        predictions = predictions[predictions["route"] != ROUTE_SHADOW]
    if predictions.empty or labels.empty:
        return pd.DataFrame(columns=[*predictions.columns, "label", "labelled_at"])
    return predictions.merge(labels, on=["request_id", "row"], how="inner", validate="many_to_one")


def count_dead_letters(
    uri: str,
    since: datetime | date | str | pd.Timestamp | None = None,
    until: datetime | date | str | pd.Timestamp | None = None,
    client: Any | None = None,
) -> int:
    """Prediction and label rows sent to the dead-letter files with since <= timestamp < until.

    A dead-letter file sits in the partition of the day its segment opened, which for rows logged
    just after midnight is the day before: one more day is listed to find them.
    """
    start, end = _utc(since), _utc(until)
    low = start.timestamp() if start is not None else float("-inf")
    high = end.timestamp() if end is not None else float("inf")
    total = 0
    for store in STORES:
        files = logstore.list_files(
            dead_letter_root(uri, store),
            first=(start - pd.Timedelta(days=1)).date() if start is not None else None,
            last=end.date() if end is not None else None,
            client=client, prefix=logstore.DEAD_PREFIX, suffix=logstore.DEAD_SUFFIX,
        )
        for file in files:
            for line in logstore.get_file(file, client).splitlines():
                try:
                    at = float(json.loads(line)[TIMESTAMP])
                except (ValueError, TypeError, KeyError):
                    continue  # not a dead-letter line (nothing else writes here): not counted
                total += low <= at < high
    return total
