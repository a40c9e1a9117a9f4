"""Prediction log and labels: rows written as date partitions, read back, joined by request and row."""

from __future__ import annotations

import base64
import datetime as dt
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops.serving import logstore, wal
from mlops.serving.logstore import PartitionWriter
from mlops.serving.prediction_log import (
    RESERVED_COLUMNS,
    count_dead_letters,
    label_columns,
    label_writer,
    logged_feature_column,
    logged_feature_columns,
    prediction_columns,
    prediction_writer,
    read_labelled_predictions,
    read_labels,
    read_prediction_log,
)
from mlops.serving.scoring import Scores

DAY1 = dt.datetime(2026, 11, 25, 23, 59, 0, tzinfo=dt.UTC).timestamp()
DAY2 = dt.datetime(2026, 11, 26, 0, 1, 0, tzinfo=dt.UTC).timestamp()
NUMERIC = frozenset({"age", "tenure"})


def columns(request_id: str, n: int = 1, at: float = DAY1, version: str = "1", route: str = "champion", **extra: Any) -> dict:
    records = [{"age": 30.0 + i, "plan": "basic" if i % 2 else None, **extra} for i in range(n)]
    scores = Scores([i % 2 for i in range(n)], [[0.6, 0.4]] * n, [0, 1])
    alias = "champion" if route == "champion" else "challenger"
    return prediction_columns(request_id, records, scores, "churn", version, alias, route, at)


def log_rows(writer: PartitionWriter, request_id: str, n: int = 1, **kwargs: Any) -> None:
    writer.append(columns(request_id, n, **kwargs), n, float_columns=NUMERIC)


def test_a_request_becomes_one_row_per_record(tmp_path):
    writer = prediction_writer(str(tmp_path / "log"))
    log_rows(writer, "a", 3)
    log_rows(writer, "b", 1, version="2")
    writer.flush()
    frame = read_prediction_log(str(tmp_path / "log"))
    assert list(frame["request_id"]) == ["a", "a", "a", "b"]
    assert list(frame["row"]) == [0, 1, 2, 0]
    assert list(frame["model_version"]) == ["1", "1", "1", "2"]
    assert frame["age"].dtype == "float64" and list(frame["age"]) == [30.0, 31.0, 32.0, 30.0]
    assert frame["plan"].tolist() == [None, "basic", None, None]
    assert list(frame["probabilities"].iloc[0]) == [0.6, 0.4] and frame["classes"].iloc[0] == "[0,1]"
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_features_missing_from_some_requests_are_null_and_clashes_are_prefixed(tmp_path):
    writer = prediction_writer(str(tmp_path / "log"))
    log_rows(writer, "a", 1)
    log_rows(writer, "b", 1, tenure=3.0, route="shadow")
    log_rows(writer, "c", 1, prediction="x")
    writer.flush()
    frame = read_prediction_log(str(tmp_path / "log")).set_index("request_id")
    assert pd.isna(frame.loc["a", "tenure"]) and frame.loc["b", "tenure"] == 3.0
    assert frame.loc["c", "feature.prediction"] == "x" and frame.loc["c", "prediction"] == 0
    assert pd.isna(frame.loc["a", "feature.prediction"])


def test_all_null_numeric_feature_stays_numeric(tmp_path):
    writer = prediction_writer(str(tmp_path / "log"))
    writer.append(prediction_columns("a", [{"age": None}], Scores([1]), "m", "1", "champion", "champion", DAY1), 1, {"age"})
    writer.flush()
    frame = read_prediction_log(str(tmp_path / "log"))
    assert frame["age"].dtype == "float64" and frame["probabilities"].isna().all()


def test_rows_are_partitioned_by_utc_date_and_read_back(tmp_path):
    root = str(tmp_path / "log")
    writer = prediction_writer(root)
    log_rows(writer, "a", 2, at=DAY1)
    log_rows(writer, "b", 1, at=DAY2)
    assert writer.flush() == 3
    dirs = sorted(p.name for p in Path(root).iterdir())
    assert dirs == ["date=2026-11-25", "date=2026-11-26"]
    assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in Path(root).rglob("*.parquet"))
    frame = read_prediction_log(root)
    assert list(frame["request_id"]) == ["a", "a", "b"]
    assert frame["timestamp"].dt.date.astype(str).tolist() == ["2026-11-25", "2026-11-25", "2026-11-26"]


def test_rows_out_of_time_order_across_midnight_are_written_once(tmp_path):
    # Concurrent requests hand rows over out of order: first and last row on one date says
    # nothing about the rows between.
    root = str(tmp_path / "log")
    writer = prediction_writer(root)
    log_rows(writer, "a", at=DAY1)
    log_rows(writer, "b", at=DAY2)
    log_rows(writer, "c", at=DAY1)
    assert writer.flush() == 3
    frame = read_prediction_log(root)
    assert sorted(frame["request_id"]) == ["a", "b", "c"]
    assert len(list(Path(root).rglob("part-*.parquet"))) == 2


def test_since_and_until_filter_by_timestamp(tmp_path):
    root = str(tmp_path / "log")
    writer = prediction_writer(root)
    for request_id, at in (("a", DAY1), ("b", DAY2), ("c", DAY2 + 3600)):
        log_rows(writer, request_id, at=at)
    writer.flush()
    assert list(read_prediction_log(root, since=dt.datetime(2026, 11, 26))["request_id"]) == ["b", "c"]
    assert list(read_prediction_log(root, until="2026-11-26 00:30")["request_id"]) == ["a", "b"]
    window = read_prediction_log(
        root, since=pd.Timestamp(DAY2, unit="s", tz="UTC"), until=dt.datetime(2026, 11, 26, 1, 1)
    )
    assert list(window["request_id"]) == ["b"]


def test_empty_or_missing_log_reads_as_empty_frame(tmp_path):
    frame = read_prediction_log(str(tmp_path / "nothing"))
    assert frame.empty and "request_id" in frame.columns
    assert read_labelled_predictions(str(tmp_path / "nothing")).empty
    assert prediction_writer(str(tmp_path / "nothing")).flush() == 0


def test_half_written_files_are_not_read(tmp_path):
    root = tmp_path / "log"
    writer = prediction_writer(str(root))
    log_rows(writer, "a")
    writer.flush()
    (root / "date=2026-11-25" / ".part-x.parquet.123.tmp").write_bytes(b"partial")
    (root / "not-a-partition").mkdir()
    assert list(read_prediction_log(str(root))["request_id"]) == ["a"]


def test_labels_join_predictions_by_request_and_row(tmp_path):
    root = str(tmp_path / "log")
    writer = prediction_writer(root)
    log_rows(writer, "a", 2)
    log_rows(writer, "b", 1)
    log_rows(writer, "a", 2, route="shadow", version="2")
    writer.flush()
    labels = label_writer(root)
    labels.append(label_columns([("a", 0, 1), ("a", 1, 0)], DAY2), 2)
    labels.append(label_columns([("a", 1, 1), ("zzz", 0, 1)], DAY2 + 10), 2)  # later label wins
    labels.flush()
    assert len(read_labels(root)) == 3
    joined = read_labelled_predictions(root)
    # One row per answered (request_id, row); b has no label, zzz was never logged.
    assert sorted(zip(joined["route"], joined["row"], joined["label"], strict=True)) == [
        ("champion", 0, 1), ("champion", 1, 1),
    ]
    # On request, shadow scorings of the same rows join too, to judge a challenger on live labels.
    with_shadow = read_labelled_predictions(root, include_shadow=True)
    assert sorted(zip(with_shadow["route"], with_shadow["row"], with_shadow["label"], strict=True)) == [
        ("champion", 0, 1), ("champion", 1, 1), ("shadow", 0, 1), ("shadow", 1, 1),
    ]
    assert str(joined["labelled_at"].dtype) == "datetime64[ns, UTC]"
    # The label store sits beside the partitions and is never mistaken for one.
    assert set(read_prediction_log(root)["request_id"]) == {"a", "b"}


def test_writer_flushes_on_row_threshold_and_on_close(tmp_path):
    root = str(tmp_path / "log")
    writer = prediction_writer(root, flush_rows=5, flush_seconds=60)
    writer.start()
    try:
        for i in range(5):
            log_rows(writer, f"r{i}")
        deadline = time.monotonic() + 10
        while writer.written_rows < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.written_rows == 5  # the threshold woke the writer long before flush_seconds
        log_rows(writer, "last", 2)
    finally:
        writer.close()
    assert writer.written_rows == 7
    frame = read_prediction_log(root)
    assert frame.groupby("request_id").size().to_dict() == {**{f"r{i}": 1 for i in range(5)}, "last": 2}


def test_failed_write_keeps_rows_for_the_next_flush(tmp_path, monkeypatch):
    root = str(tmp_path / "log")
    errors: list[BaseException] = []
    writer = prediction_writer(root, flush_seconds=0.01, on_error=errors.append)
    real = logstore.write_table
    calls = {"n": 0}

    def flaky(table, uri, **options):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("store down")
        return real(table, uri, **options)

    monkeypatch.setattr(logstore, "write_table", flaky)
    log_rows(writer, "a")
    assert writer.flush() == 0 and len(errors) == 1
    log_rows(writer, "b")
    assert writer.flush() == 2
    assert list(read_prediction_log(root)["request_id"]) == ["a", "b"]


def take_store_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write to the destination fails until the monkeypatch is undone."""

    def down(*_args, **_kwargs):
        raise OSError("store down")

    monkeypatch.setattr(logstore, "write_table", down)


def test_buffer_is_bounded_when_the_store_stays_down(tmp_path, monkeypatch):
    writer = prediction_writer(str(tmp_path), flush_seconds=0.0, max_buffered_rows=3)

    take_store_down(monkeypatch)
    for i in range(5):
        log_rows(writer, f"r{i}")
    writer.flush()
    assert writer.dropped_rows == 2
    log_rows(writer, "r5")
    writer.flush()
    assert writer.dropped_rows == 3  # still only the newest 3 kept


@pytest.fixture
def s3_prefix(monkeypatch):
    moto = pytest.importorskip("moto")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("MLOPS_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto.mock_aws():
        from mlops.data import s3_client

        s3_client().create_bucket(Bucket="prediction-logs")
        yield "s3://prediction-logs/serving/predictions"


def test_s3_prefix_works_like_a_directory(s3_prefix):
    writer = prediction_writer(s3_prefix)
    log_rows(writer, "a", 2, at=DAY1)
    log_rows(writer, "b", 1, at=DAY2)
    writer.flush()
    labels = label_writer(s3_prefix)
    labels.append(label_columns([("b", 0, 1)], DAY2), 1)
    labels.flush()
    from mlops.data import s3_client

    keys = [o["Key"] for o in s3_client().list_objects_v2(Bucket="prediction-logs")["Contents"]]
    assert any(k.startswith("serving/predictions/date=2026-11-25/part-") for k in keys)
    assert any(k.startswith("serving/predictions/labels/date=2026-11-26/part-") for k in keys)
    assert list(read_prediction_log(s3_prefix)["request_id"]) == ["a", "a", "b"]
    assert list(read_prediction_log(s3_prefix, since="2026-11-26")["request_id"]) == ["b"]
    assert read_labelled_predictions(s3_prefix)[["request_id", "label"]].values.tolist() == [["b", 1]]
    # A retried write adds only the files still missing: the one there is neither rewritten nor shrunk.
    part = next(f"s3://prediction-logs/{k}" for k in keys if k.startswith("serving/predictions/date=2026-11-25/"))
    assert logstore.exists(part) and not logstore.exists(part[:-1])
    fewer = read_prediction_log(s3_prefix).iloc[:1]
    name = part.rsplit("part-", 1)[1][: -len(".parquet")]
    import pyarrow as pa

    assert logstore.write_table(pa.Table.from_pandas(fewer, preserve_index=False), s3_prefix, name=name, keep_existing=True) == []
    assert len(read_prediction_log(s3_prefix)) == 3


# -- features named like log columns: one mapping for the writer and every reader ----------------------

# Every name the log or the label join owns, and a name that already looks prefixed.
CLASHING_NAMES = [*sorted(RESERVED_COLUMNS), "feature.x"]


@pytest.mark.parametrize("name", CLASHING_NAMES)
def test_a_feature_named_like_a_log_column_reaches_the_monitor_and_the_retrain(tmp_path, name):
    from mlops import monitoring
    from mlops.config import parse_config
    from mlops.contract import infer_contract
    from mlops.retraining import combine_with_labelled

    twin = f"feature.{name}"  # the first feature's prefixed name, taken by a second feature
    base = pd.DataFrame({
        name: [1.5, 2.5, 3.5, 4.5], twin: [-1.5, -2.5, -3.5, -4.5], "churned": [0, 1, 0, 1],
        "event_time": pd.date_range("2026-01-01", periods=4, freq="h"),
    })
    config = parse_config({
        "dataset": {"uri": "x.parquet", "target": "churned", "timestamp": "event_time"}, "model": {"name": "m"},
    })
    contract = infer_contract(base, "churned", "event_time", "classification")
    root = str(tmp_path / "log")
    records = [{name: 10.5 + i, twin: 20.5 + i} for i in range(3)]
    at = time.time()
    writer = prediction_writer(root)
    # As the serving app writes them: numeric features named by the same mapping.
    writer.append(prediction_columns("r", records, Scores([1, 0, 1], [[0.4, 0.6]] * 3, [0, 1]), "m", "1",
                                     "champion", "champion", at), 3, logged_feature_columns(frozenset({name, twin})))
    writer.flush()
    labels = label_writer(root)
    labels.append(label_columns([("r", 0, 1), ("r", 1, 1), ("r", 2, 0)], at + 1), 3)
    labels.flush()

    log = read_prediction_log(root)
    assert log["row"].tolist() == [0, 1, 2] and log["prediction"].tolist() == [1, 0, 1]  # the log's own
    seen = monitoring.features_from_log(log, contract)
    assert seen[name].tolist() == [10.5, 11.5, 12.5] and seen[twin].tolist() == [20.5, 21.5, 22.5]

    combined = combine_with_labelled(base, read_labelled_predictions(root), config)
    assert (combined.added, combined.dropped) == (3, 0)
    added = combined.frame.tail(3)
    assert added[name].tolist() == [10.5, 11.5, 12.5] and added[twin].tolist() == [20.5, 21.5, 22.5]
    assert added["churned"].tolist() == [1, 1, 0]


def test_the_feature_column_mapping_is_one_to_one():
    names = [*CLASHING_NAMES, *(f"feature.{n}" for n in CLASHING_NAMES), "age", "plan"]
    columns = [logged_feature_column(n) for n in names]
    assert len(set(columns)) == len(names)
    assert not set(columns) & RESERVED_COLUMNS
    assert logged_feature_column("age") == "age" and logged_feature_column("row") == "feature.row"


@pytest.mark.parametrize("damage", [b"PAR1abc", b"", "cut"])
def test_an_unreadable_part_is_skipped_and_named_and_the_rest_is_read(tmp_path, damage):
    root = tmp_path / "log"
    writer = prediction_writer(str(root))
    log_rows(writer, "a", 2, at=DAY1)
    log_rows(writer, "b", 1, at=DAY2)
    writer.flush()
    labels = label_writer(str(root))
    labels.append(label_columns([("a", 0, 1), ("b", 0, 0)], DAY2), 2)
    labels.flush()
    good = next((root / "date=2026-11-26").glob("part-*.parquet"))
    payload = good.read_bytes()[: len(good.read_bytes()) // 2] if damage == "cut" else damage
    bad = root / "date=2026-11-25" / "part-bad.parquet"
    bad.write_bytes(payload)
    bad_label = root / "labels" / "date=2026-11-26" / "part-bad.parquet"
    bad_label.write_bytes(payload)

    skipped: list[str] = []
    assert sorted(read_prediction_log(str(root), skipped=skipped)["request_id"]) == ["a", "a", "b"]
    assert skipped == [str(bad)]
    skipped.clear()
    joined = read_labelled_predictions(str(root), skipped=skipped)
    assert sorted(zip(joined["request_id"], joined["label"], strict=True)) == [("a", 1), ("b", 0)]
    assert sorted(skipped) == sorted([str(bad), str(bad_label)])
    assert len(read_prediction_log(str(root))) == 3  # without a list to fill, still read


def test_labels_are_read_from_the_date_of_since_on(tmp_path):
    root = str(tmp_path / "log")
    labels = label_writer(root)
    labels.append(label_columns([("a", 0, 1)], DAY1), 1)
    labels.append(label_columns([("b", 0, 0)], DAY2), 1)
    labels.flush()
    assert sorted(read_labels(root)["request_id"]) == ["a", "b"]
    assert list(read_labels(root, since="2026-11-26 12:00")["request_id"]) == ["b"]
# -- a writer never dies on a bad record; dead letters; health ---------------------------------


def label_rows(writer: PartitionWriter, *rows: tuple[str, int, Any], at: float = DAY1) -> None:
    writer.append(label_columns(list(rows), at), len(rows))


def test_a_row_no_arrow_type_holds_goes_to_the_dead_letter_file_and_the_rest_is_written(tmp_path):
    root = str(tmp_path / "log")
    counted: list[int] = []
    labels = label_writer(root, on_dead_letter=counted.append)
    now = time.time()
    label_rows(labels, ("a", 0, 1), ("b", 2**64 - 1, 1), ("c", 1, 0), at=now)  # the row index fits no int64
    assert labels.flush() == 2
    assert sorted(read_labels(root)["request_id"]) == ["a", "c"]
    assert labels.dead_letter_rows == 1 and counted == [1]
    (dead,) = (tmp_path / "log" / "dead-letter" / "labels").rglob("dead-*.jsonl")
    line = orjson.loads(dead.read_bytes())
    assert line["row"]["request_id"] == "b" and line["row"]["row"] == 2**64 - 1
    assert line["reason"].startswith("OverflowError") and line["store"] == "label-log"
    assert count_dead_letters(root) == 1
    stamp = pd.Timestamp(now, unit="s", tz="UTC")
    assert count_dead_letters(root, since=stamp + pd.Timedelta(seconds=1)) == 0  # by the row's own time
    assert count_dead_letters(root, since=stamp - pd.Timedelta(days=1), until=stamp + pd.Timedelta(seconds=1)) == 1
    assert count_dead_letters(str(tmp_path / "nothing")) == 0


def test_the_writer_thread_survives_bad_records_and_keeps_writing(tmp_path):
    root = str(tmp_path / "log")
    labels = label_writer(root, flush_seconds=0.05, convert_seconds=0.01)
    labels.start()
    try:
        label_rows(labels, ("bad", 2**64 - 1, 1))
        wait = time.monotonic() + 10
        while labels.dead_letter_rows < 1 and time.monotonic() < wait:
            time.sleep(0.01)
        label_rows(labels, ("after", 0, 1))
        while labels.written_rows < 1 and time.monotonic() < wait:
            time.sleep(0.01)
        assert labels.health() == logstore.OK
    finally:
        labels.close()
    assert list(read_labels(root)["request_id"]) == ["after"]


def test_slices_whose_types_differ_are_written_together(tmp_path):
    # An int in one slice and a string in the next made every later write fail for good.
    root = str(tmp_path / "log")
    writer = prediction_writer(root)
    log_rows(writer, "a", 1, signup=1767225600)
    writer._convert()  # one slice converted on its own, as the thread does every convert_seconds
    log_rows(writer, "b", 1, signup="2026-01-01")
    assert writer.flush() == 2
    frame = read_prediction_log(root).set_index("request_id")
    assert frame.loc["a", "signup"] == "1767225600" and frame.loc["b", "signup"] == "2026-01-01"


def test_health_turns_failing_after_repeated_failed_writes_without_segments(tmp_path, monkeypatch):
    writer = prediction_writer(str(tmp_path / "log"))

    take_store_down(monkeypatch)
    for i in range(logstore.FAILING_AFTER):
        assert writer.health() == logstore.OK
        log_rows(writer, f"r{i}")
        writer.flush()
    assert writer.health() == logstore.FAILING and "store down" in writer.last_error
    segmented = prediction_writer(str(tmp_path / "log2"), wal_dir=tmp_path / "wal")
    segmented.start()
    try:
        for i in range(logstore.FAILING_AFTER):
            log_rows(segmented, f"r{i}")
            segmented.flush()
        assert segmented.health() == logstore.RETRYING  # every row is safe on local disk
    finally:
        monkeypatch.undo()
        segmented.close()
    assert len(read_prediction_log(str(tmp_path / "log2"))) == logstore.FAILING_AFTER


# -- write-ahead segments ----------------------------------------------------------------------


def segment_files(wal_dir: Path) -> list[Path]:
    return sorted(wal_dir.rglob("*.wal"))


def test_rows_left_in_segments_by_a_dead_process_are_written_once_at_the_next_start(tmp_path):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    crashed = prediction_writer(root, wal_dir=wal_dir)
    crashed.segments.acquire()
    log_rows(crashed, "a", 2)
    log_rows(crashed, "b", 1)
    crashed.segments.release()  # the process dies here: nothing converted, nothing written
    assert len(segment_files(wal_dir)) == 1 and read_prediction_log(root).empty

    restarted = prediction_writer(root, wal_dir=wal_dir)
    restarted.start()
    restarted.close()
    assert read_prediction_log(root).groupby("request_id").size().to_dict() == {"a": 2, "b": 1}
    assert segment_files(wal_dir) == []


def test_a_segment_written_but_not_yet_removed_is_not_written_twice(tmp_path):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    writer = prediction_writer(root, wal_dir=wal_dir)
    writer.start()
    log_rows(writer, "a", 2)
    (segment,) = segment_files(wal_dir)
    kept = segment.read_bytes()
    writer.close()
    segment.write_bytes(kept)  # as if the process died between the Parquet write and the removal
    again = prediction_writer(root, wal_dir=wal_dir)
    again.start()
    again.close()
    assert len(read_prediction_log(root)) == 2
    assert len(list(Path(root).rglob("part-*.parquet"))) == 1


def test_segments_belong_to_their_destination_and_one_process(tmp_path):
    wal_dir = tmp_path / "wal"
    first = prediction_writer(str(tmp_path / "one"), wal_dir=wal_dir)
    first.start()
    other = prediction_writer(str(tmp_path / "two"), wal_dir=wal_dir)
    other.start()  # another destination: its own directory
    same = prediction_writer(str(tmp_path / "one"), wal_dir=wal_dir)
    same.start()  # a second process on the same segments would steal them: refused, and said
    try:
        assert (first.health(), other.health()) == (logstore.OK, logstore.OK)
        assert same.health() == logstore.FAILING and "in use by another serving process" in same.wal_error
    finally:
        for writer in (first, other, same):
            writer.close()


def test_rows_spilled_from_memory_are_read_back_from_their_segment(tmp_path, monkeypatch):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    writer = prediction_writer(root, wal_dir=wal_dir, max_buffered_rows=2)
    writer.start()
    real = logstore.write_table

    take_store_down(monkeypatch)
    for i in range(5):
        log_rows(writer, f"r{i}")
        writer.flush()
    assert writer.dropped_rows == 0 and sum(u.tables is None for u in writer._units) >= 3
    monkeypatch.setattr(logstore, "write_table", real)
    writer.close()
    assert sorted(read_prediction_log(root)["request_id"]) == [f"r{i}" for i in range(5)]


# -- a full write-ahead disk, and segments that are not row batches (issue 23, classes 1 and 2) --


class Disk:
    """The write-ahead directory's free space: writes to files under it stop at `free` bytes.

    A write that crosses the limit is cut short and the next one raises ENOSPC, as a full
    filesystem answers; `free=None` is a disk with room. Only files under `directory` count.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        self.free: int | None = None
        self._write = os.write

    def write(self, fd: int, data: Any) -> int:
        if self.free is None or not os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory):
            return self._write(fd, data)
        if self.free == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(fd, bytes(data)[: self.free])
        self.free -= written
        return written


@contextmanager
def wal_disk(wal_dir: Path) -> Iterator[Disk]:
    disk = Disk(wal_dir)
    with mock.patch.object(os, "write", disk.write):
        yield disk


def test_replay_never_replaces_a_part_file_with_fewer_rows(tmp_path):
    # A segment that holds fewer rows than its part file (left by an earlier process whose segment
    # appends failed, or cut by a machine crash) must not shrink what was already written.
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    writer = prediction_writer(root, wal_dir=wal_dir)
    writer.start()
    log_rows(writer, "a", 3)
    (segment,) = segment_files(wal_dir)
    short = segment.read_bytes()
    log_rows(writer, "b", 2)
    writer.close()
    assert len(read_prediction_log(root)) == 5
    segment.write_bytes(short)
    again = prediction_writer(root, wal_dir=wal_dir)
    again.start()
    again.close()
    assert read_prediction_log(root).groupby("request_id").size().to_dict() == {"a": 3, "b": 2}
    assert segment_files(wal_dir) == []


def test_rows_the_full_disk_cannot_keep_are_refused_and_the_rest_logged_once(tmp_path):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    acknowledged = []
    with wal_disk(wal_dir) as disk:
        writer = prediction_writer(root, wal_dir=wal_dir)
        writer.start()
        log_rows(writer, "kept", 2)
        acknowledged.append("kept")
        disk.free = 100  # part of the next record fits: the segment must not keep a torn record
        for i in range(3):
            with pytest.raises(logstore.LogUnavailable, match="No space left on device"):
                log_rows(writer, f"refused{i}", 2)
        assert writer.health() == logstore.FAILING and "No space left" in writer.wal_error
        disk.free = None
        log_rows(writer, "after", 1)
        acknowledged.append("after")
        assert writer.health() == logstore.OK
        writer.close()
        again = prediction_writer(root, wal_dir=wal_dir)
        again.start()
        again.close()
    assert read_prediction_log(root).groupby("request_id").size().to_dict() == {"kept": 2, "after": 1}
    assert segment_files(wal_dir) == []


class Store:
    """The destination: down after `files` more part files (None: up), as an outage starts mid-write."""

    def __init__(self) -> None:
        self.files: int | None = None
        self._write = logstore.write_bytes

    def write_bytes(self, uri: str, payload: bytes, client: Any = None) -> str:
        if self.files is not None:
            if self.files == 0:
                raise OSError("store down")
            self.files -= 1
        return self._write(uri, payload, client=client)


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("predict"), st.integers(1, 3)),
        st.tuples(st.just("predict-two-days"), st.integers(2, 3)),  # one file per date: two per segment
        st.tuples(st.just("store-down-after"), st.integers(0, 2)),
        st.tuples(st.just("store-up"), st.just(0)),
        st.tuples(st.just("fill"), st.integers(0, 600)),  # bytes left free on the write-ahead disk
        st.tuples(st.just("free"), st.just(0)),
        st.tuples(st.just("flush"), st.just(0)),
        st.tuples(st.just("sigterm"), st.just(0)),
        st.tuples(st.just("kill"), st.just(0)),
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(ACTIONS)
def test_every_acknowledged_row_is_logged_exactly_once_whatever_the_disk_does(actions):
    """Full disk, freed disk, store outages (mid-write too), flushes, SIGTERM (close) and kill -9
    (memory lost), in any order."""
    with tempfile.TemporaryDirectory() as tmp:
        root, wal_dir = str(Path(tmp) / "log"), Path(tmp) / "wal"
        acknowledged: dict[str, int] = {}
        store = Store()
        with wal_disk(wal_dir) as disk, mock.patch.object(logstore, "write_bytes", store.write_bytes):

            def boot() -> PartitionWriter:
                # A new process: it writes what the last one left, then serves (no thread: the
                # test drives the flushes).
                previous = prediction_writer(root, wal_dir=wal_dir)
                previous.start()
                previous.close()
                writer = prediction_writer(root, wal_dir=wal_dir)
                writer.segments.acquire()
                return writer

            writer = boot()
            for step, (action, value) in enumerate(actions):
                if action.startswith("predict"):
                    # Across midnight, a request's rows fall in two date partitions.
                    rows = columns(f"r{step}", value, at=DAY1)
                    if action == "predict-two-days":
                        rows[logstore.TIMESTAMP] = [DAY1] + [DAY2] * (value - 1)
                    try:
                        writer.append(rows, value, float_columns=NUMERIC)
                    except logstore.LogUnavailable:
                        continue  # refused: the client was told, nothing to keep
                    acknowledged[f"r{step}"] = value
                elif action == "store-down-after":
                    store.files = value
                elif action == "store-up":
                    store.files = None
                elif action == "fill":
                    disk.free = value
                elif action == "free":
                    disk.free = None
                elif action == "flush":
                    writer.flush()
                elif action == "sigterm":
                    writer.close()
                    writer = boot()
                else:  # kill -9: memory is gone, the segments stay
                    writer.segments.release()
                    writer = boot()
            disk.free = store.files = None
            writer.close()
            boot().close()
        logged = read_prediction_log(root).groupby("request_id").size().to_dict()
        assert logged == acknowledged


POISON = [
    {"c": 1, "n": 1, "f": []},  # the case found: columns that are not columns
    {"c": {"request_id": "x"}, "n": 1, "f": []},  # a column that is not a list
    {"c": {"request_id": ["x", "y"]}, "n": 1, "f": []},  # lengths that disagree with n
    {"c": {"request_id": ["x"]}, "n": "1", "f": []},  # a count that is not a number
    {"c": {"request_id": ["x"]}, "n": 1},  # a key missing
    [1, 2, 3],  # not an object at all
]


def leave_segment(wal_dir: Path, root: str, *records: Any, tail: bytes = b"") -> Path:
    """A segment a previous process left, holding `records` (and `tail` bytes after them)."""
    directory = wal.destination_dir(wal_dir, root) / "predictions"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{wal.new_segment_id()}{wal.SUFFIX}"
    path.write_bytes(b"".join(wal.encode(r) for r in records) + tail)
    return path


def good_record(request_id: str, n: int = 1) -> dict[str, Any]:
    return {"c": columns(request_id, n), "n": n, "f": sorted(NUMERIC)}


@pytest.mark.parametrize("poison", POISON, ids=range(len(POISON)))
def test_a_segment_record_that_is_not_a_row_batch_is_dead_lettered_and_the_log_goes_on(tmp_path, poison):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    leave_segment(wal_dir, root, good_record("before"), poison, good_record("same-segment"))
    leave_segment(wal_dir, root, good_record("next-segment", 2))
    counted: list[int] = []
    writer = prediction_writer(root, wal_dir=wal_dir, on_dead_letter=counted.append)
    writer.start()
    log_rows(writer, "live")
    writer.close()
    logged = read_prediction_log(root).groupby("request_id").size().to_dict()
    assert logged == {"before": 1, "same-segment": 1, "next-segment": 2, "live": 1}
    assert writer.dead_letter_rows == 1 and counted == [1] and writer.health() == logstore.OK
    (dead,) = (tmp_path / "log" / "dead-letter" / "predictions").rglob("dead-*.jsonl")
    line = orjson.loads(dead.read_bytes())
    assert line["record"] == poison and line["reason"].startswith("not a row batch")
    assert count_dead_letters(root) == 1
    assert segment_files(wal_dir) == []


def test_a_segment_that_cannot_be_read_is_moved_aside_with_its_reason(tmp_path):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    unreadable = leave_segment(wal_dir, root)
    unreadable.unlink()
    unreadable.mkdir()  # reading it fails whoever runs the test (root reads a file of mode 000)
    torn = leave_segment(wal_dir, root, good_record("whole"), tail=b"\x05\x00\x00\x00{\"c\"")
    garbled = leave_segment(wal_dir, root, tail=b"\x03\x00\x00\x00{x}" + wal.encode(good_record("after-garbled")))
    leave_segment(wal_dir, root, good_record("next"))
    writer = prediction_writer(root, wal_dir=wal_dir)
    writer.start()
    writer.close()
    logged = read_prediction_log(root).groupby("request_id").size().to_dict()
    assert logged == {"whole": 1, "after-garbled": 1, "next": 1}
    assert writer.dead_letter_rows == 3 and count_dead_letters(root) == 3
    lines = sorted(
        (orjson.loads(line) for f in (tmp_path / "log" / "dead-letter").rglob("dead-*.jsonl") for line in f.read_bytes().splitlines()),
        key=lambda line: line["segment"],
    )
    assert lines[0]["segment"] == unreadable.stem and lines[0]["reason"].startswith("unreadable segment: IsADirectoryError")
    assert lines[1]["segment"] == torn.stem and lines[1]["reason"].startswith("torn segment: 8 bytes after record 1")
    assert lines[2]["segment"] == garbled.stem and lines[2]["reason"].startswith("not JSON: ")
    assert base64.b64decode(lines[2]["payload_base64"]) == b"{x}"
    assert segment_files(wal_dir) == []  # nothing replayed again at the next start
    assert list((wal_dir).rglob(f"{unreadable.name}*")) != []  # kept aside for a person to look at


def test_rows_that_do_not_reach_the_destination_for_the_retry_window_make_the_writer_failing(tmp_path, monkeypatch):
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    writer = prediction_writer(root, wal_dir=wal_dir, retry_window=0.0)
    writer.start()
    try:
        assert writer.health() == logstore.OK  # nothing waiting: an idle log is not a stalled one
        take_store_down(monkeypatch)
        log_rows(writer, "a")
        writer.flush()
        assert writer.health() == logstore.FAILING and "store down" in writer.last_error
        monkeypatch.undo()
        writer.flush()
        assert writer.health() == logstore.OK
    finally:
        writer.close()
    assert len(read_prediction_log(root)) == 1


def test_a_value_orjson_cannot_encode_is_kept_in_the_segment_exactly(tmp_path):
    # An integer beyond 64 bits passes orjson by; the segment keeps it whole (not as a float), and
    # the replay sends its row to the dead letters like the live writer would.
    root, wal_dir = str(tmp_path / "log"), tmp_path / "wal"
    crashed = label_writer(root, wal_dir=wal_dir)
    crashed.segments.acquire()
    label_rows(crashed, ("a", 0, 1), ("b", 2**64 - 1, 1))
    assert crashed.health() == logstore.OK
    crashed.segments.release()
    restarted = label_writer(root, wal_dir=wal_dir)
    restarted.start()
    restarted.close()
    assert list(read_labels(root)["request_id"]) == ["a"] and count_dead_letters(root) == 1
    (dead,) = (tmp_path / "log" / "dead-letter" / "labels").rglob("dead-*.jsonl")
    assert orjson.loads(dead.read_bytes())["row"]["row"] == 2**64 - 1
