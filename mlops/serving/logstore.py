"""An append-only store of Parquet files partitioned by UTC date, on a local dir or an s3:// prefix.

Layout: ``<root>/date=YYYY-MM-DD/part-<id>.parquet``. Files are only ever added, each one
atomically (a hidden temporary file renamed into place; one S3 put), so a reader never sees half
a file and writers never lock. `PartitionWriter` buffers rows in memory and writes them from a
background thread; with a write-ahead directory (`mlops.serving.wal`) every row is on local disk
before `append` returns (or `append` raises LogUnavailable and the caller refuses the request),
and a file's id is the id of the segment its rows came from. A file is never replaced: writing a
segment again (a crash between the write and the segment's removal, a retried write) only adds
the files still missing, so no row is written twice and no file ever shrinks.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops.data import DataLocation, parse_uri, read_bytes, s3_client, s3_errors, write_bytes
from mlops.errors import MlopsError
from mlops.serving import wal

log = logging.getLogger(__name__)

TIMESTAMP = "timestamp"
PARTITION_PREFIX = "date="
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
DEAD_PREFIX, DEAD_SUFFIX = "dead-", ".jsonl"
_DAY = 86_400

# Writer health, as /ready reports it.
OK = "ok"
RETRYING = "retrying"  # the destination refuses writes; every row is kept in the write-ahead segments
FAILING = "failing"  # rows can be lost or are stuck: see PartitionWriter.health
FAILING_AFTER = 3  # consecutive failed writes before a writer is no longer "ok"
# How long rows may wait for the destination before the writer is "failing" (and /ready 503):
# long enough to ride out a store's restart, short enough that a log that stopped moving
# (a destination down for good, a write that fails the same way every time) is seen.
RETRY_WINDOW = 300.0


class LogUnavailable(MlopsError):
    """The write-ahead segment cannot keep these rows (a full disk): the request must be refused."""

    transient = True


def _is_s3(root: str) -> bool:
    return root.startswith("s3://")


def join(root: str, *parts: str) -> str:
    """`root`/`parts` for a local directory or an s3:// prefix."""
    if _is_s3(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).joinpath(*parts))


def partition(day: date) -> str:
    return f"{PARTITION_PREFIX}{day.isoformat()}"


def write_table(
    table: pa.Table, root: str, client: Any | None = None, name: str | None = None, keep_existing: bool = False,
) -> list[str]:
    """Write `table` as one Parquet file per UTC date of its TIMESTAMP column; return the URIs.

    The files are ``part-<name>.parquet`` (a fresh id when no name is given). With
    `keep_existing`, a file already there is left as it is and not returned: each file is
    written whole, so one that exists holds every row of its name and date already.
    """
    if table.num_rows == 0:
        return []
    name = name or uuid.uuid4().hex
    seconds = table.column(TIMESTAMP).cast(pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000_000
    days = seconds // _DAY
    written = []
    unique = np.unique(days)
    for day in unique:
        # Rows are not sorted by time (concurrent requests, a clock step): only one date in the
        # whole table lets it go as it is.
        part = table if len(unique) == 1 else table.filter(pa.array(days == day))
        stamp = datetime.fromtimestamp(int(day) * _DAY, UTC).strftime("%Y-%m-%d")
        uri = join(root, f"{PARTITION_PREFIX}{stamp}", f"{PART_PREFIX}{name}{PART_SUFFIX}")
        if keep_existing and exists(uri, client):
            continue
        buffer = io.BytesIO()
        pq.write_table(part, buffer)
        write_bytes(uri, buffer.getvalue(), client=client)
        written.append(uri)
    return written


def _location(uri: str) -> DataLocation:
    # The log names its own files (.jsonl is no data format parse_uri would accept).
    if _is_s3(uri):
        bucket, _, key = uri[len("s3://"):].partition("/")
        return DataLocation(uri, bucket, key, "jsonl")
    return DataLocation(uri, None, uri, "jsonl")


def put_file(uri: str, payload: bytes, client: Any | None = None) -> None:
    """Write a whole log file atomically: renamed into place locally, one put on S3."""
    loc = _location(uri)
    if loc.is_s3:
        with s3_errors(uri, "write"):
            (client or s3_client()).put_object(Bucket=loc.bucket, Key=loc.key, Body=payload)
        return
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(payload)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def get_file(uri: str, client: Any | None = None) -> bytes:
    return read_bytes(_location(uri), client)


def exists(uri: str, client: Any | None = None) -> bool:
    """Whether a log file is there (on S3: listed under its exact key)."""
    loc = _location(uri)
    if not loc.is_s3:
        return Path(uri).exists()
    with s3_errors(uri, "list"):
        found = (client or s3_client()).list_objects_v2(Bucket=loc.bucket, Prefix=loc.key, MaxKeys=1)
    return any(obj["Key"] == loc.key for obj in found.get("Contents", []))


def _partition_day(name: str) -> date | None:
    if not name.startswith(PARTITION_PREFIX):
        return None
    try:
        return date.fromisoformat(name[len(PARTITION_PREFIX):])
    except ValueError:
        return None


def list_files(
    root: str, first: date | None = None, last: date | None = None, client: Any | None = None,
    prefix: str = PART_PREFIX, suffix: str = PART_SUFFIX,
) -> list[str]:
    """Every committed part file under `root` whose partition date is within [first, last]."""
    def wanted(day: date | None) -> bool:
        return day is not None and (first is None or day >= first) and (last is None or day <= last)

    if not _is_s3(root):
        base = Path(root)
        if not base.is_dir():
            return []
        return sorted(
            str(path)
            for directory in base.iterdir()
            if directory.is_dir() and wanted(_partition_day(directory.name))
            for path in directory.glob(f"{prefix}*{suffix}")
        )
    # An unreachable or busy endpoint is StorageUnavailable (the monitor's read task retries it).
    with s3_errors(root, "list"):
        return sorted(_s3_keys(root, wanted, client or s3_client(), prefix, suffix))


def _s3_keys(
    root: str, wanted: Callable[[date | None], bool], client: Any, name_prefix: str, suffix: str
) -> Iterator[str]:
    loc = parse_uri(join(root, "x.parquet"))
    prefix = loc.key[: -len("x.parquet")]
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix + PARTITION_PREFIX):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix):].split("/")
            if (
                len(rest) == 2
                and rest[1].startswith(name_prefix)
                and rest[1].endswith(suffix)
                and wanted(_partition_day(rest[0]))
            ):
                yield f"s3://{loc.bucket}/{obj['Key']}"


def read_files(uris: list[str], client: Any | None = None, skipped: list[str] | None = None) -> pd.DataFrame:
    """Concatenate part files (column sets may differ between model versions).

    A part that cannot be parsed (truncated, not Parquet) is left out and logged, so one bad file
    does not hide the rest of the window; its URI is appended to `skipped` when given. A store that
    cannot be reached is not a bad part: that error goes up (the read is retried).
    """
    frames = []
    for uri in uris:
        source = io.BytesIO(read_bytes(parse_uri(uri), client)) if _is_s3(uri) else uri
        try:
            frames.append(pd.read_parquet(source))
        except (pa.ArrowException, OSError, ValueError) as err:
            log.warning("skipped unreadable log part %s: %s", uri, str(err).splitlines()[0] if str(err) else type(err).__name__)
            if skipped is not None:
                skipped.append(uri)
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True, sort=False)


def _arrow_column(name: str, values: list[Any], floats: set[str], times: tuple[str, ...]) -> pa.Array:
    if name in times:
        nanos = (np.asarray(values, dtype="float64") * 1e9).astype("int64")
        return pa.array(nanos, type=pa.timestamp("ns", tz="UTC"))
    if name in floats:
        return pa.array(values, type=pa.float64(), from_pandas=True)
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types in one column (e.g. a category set holding numbers and strings): keep text.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _table(columns: Mapping[str, list[Any]], floats: set[str], times: tuple[str, ...]) -> pa.Table:
    return pa.table({name: _arrow_column(name, values, floats, times) for name, values in columns.items()})


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300]


def convert_rows(
    columns: Mapping[str, list[Any]], rows: int, floats: set[str], times: tuple[str, ...]
) -> tuple[list[pa.Table], list[dict[str, Any]]]:
    """Arrow tables of the rows, and the rows no Arrow type can hold, each with the reason.

    The whole slice converts in one go; only when that fails is each row tried alone, so one bad
    value (an integer beyond 64 bits, say) costs its own row and not the slice.
    """
    try:
        return [_table(columns, floats, times)], []
    except Exception:  # any conversion error: find the rows to blame
        pass
    good, dead = [], []
    for i in range(rows):
        try:
            _table({name: values[i : i + 1] for name, values in columns.items()}, floats, times)
        except Exception as err:
            dead.append({"reason": _reason(err), "row": {name: values[i] for name, values in columns.items()}})
        else:
            good.append(i)
    if not good:
        return [], dead
    try:
        return [_table({name: [values[i] for i in good] for name, values in columns.items()}, floats, times)], dead
    except Exception:  # each row converts alone but not together: one-row tables, unified when written
        return [_table({n: v[i : i + 1] for n, v in columns.items()}, floats, times) for i in good], dead


def unify(tables: list[pa.Table]) -> pa.Table:
    """One table from slices whose column sets and types may differ; clashing types become text."""
    if len(tables) == 1:
        return tables[0]
    try:
        # Column sets and null-only columns differ between slices; "permissive" unifies them.
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for column in table.schema:
            if not pa.types.is_null(column.type):
                types.setdefault(column.name, set()).add(column.type)
    clashing = {name for name, found in types.items() if len(found) > 1}
    fixed = []
    for table in tables:
        for name in clashing & set(table.column_names):
            text = pa.array([None if v is None else str(v) for v in table.column(name).to_pylist()], pa.string())
            table = table.set_column(table.column_names.index(name), name, text)
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")


@dataclass
class _Buffer:
    """Rows as column lists, as the request path hands them over."""

    columns: dict[str, list[Any]] = field(default_factory=dict)
    floats: set[str] = field(default_factory=set)
    rows: int = 0

    def add(self, columns: Mapping[str, list[Any]], rows: int, float_columns: Iterable[str]) -> None:
        buffer = self.columns
        for name, values in columns.items():
            column = buffer.get(name)
            if column is None:
                # A column new to this buffer (another version's feature): earlier rows get nulls.
                column = buffer[name] = [None] * self.rows
            column.extend(values)
        self.rows += rows
        if len(buffer) != len(columns):
            for name, column in buffer.items():
                if name not in columns:
                    column.extend([None] * rows)
        self.floats.update(float_columns)


@dataclass
class _Unit:
    """The rows of one sealed segment, written together as ``part-<id>.parquet`` files."""

    id: str
    rows: int
    tables: list[pa.Table] | None  # None: only on disk (left by a crashed process, or spilled)
    dead: list[dict[str, Any]]
    on_disk: bool  # every row is in the segment file, so memory may let go of them
    tried: bool = False  # a write was attempted (here or by an earlier process): files may exist


def _row_batch(record: Any, time_columns: tuple[str, ...]) -> tuple[dict[str, list[Any]], int, list[str]]:
    """The columns, row count and float columns of a segment record; ValueError saying what is wrong.

    `append` only ever writes good ones; anything else in a segment (a bug, a damaged disk, a
    hand-made file) must cost its own record, never stop the log.
    """
    if not isinstance(record, dict):
        raise ValueError(f"a {type(record).__name__}, not an object")
    missing = [key for key in ("c", "n", "f") if key not in record]
    if missing:
        raise ValueError(f"no {', '.join(repr(k) for k in missing)}")
    columns, rows, floats = record["c"], record["n"], record["f"]
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ValueError(f"'n' is {rows!r}, not a row count")
    if not isinstance(columns, dict):
        raise ValueError(f"'c' is a {type(columns).__name__}, not columns")
    for name, values in columns.items():
        if not isinstance(values, list) or len(values) != rows:
            raise ValueError(f"column {name!r} is not a list of {rows} value(s)")
    for name in time_columns:
        if rows and name not in columns:
            raise ValueError(f"no {name!r} column")
    if not isinstance(floats, list) or not all(isinstance(name, str) for name in floats):
        raise ValueError("'f' is not a list of column names")
    return columns, rows, floats


class PartitionWriter:
    """Buffers rows column by column and writes them as Parquet partitions from its own thread.

    `append` is cheap and thread-safe: the request path hands over ready-made column lists, and
    with a `SegmentDir` they are appended to the open write-ahead segment before it returns. The
    writer thread turns them into Arrow tables every `convert_seconds` (in C, a fraction of a
    microsecond a value) and seals the segment every `flush_seconds` or `flush_rows` rows, and
    on `close`: a sealed segment's rows are written (one file per date, named after the segment)
    and then the segment file is deleted. When the segment cannot take a request's rows (a full
    disk), `append` raises LogUnavailable and keeps none of them. Converting in small slices
    matters: whatever this thread holds the GIL for is added to the latency of requests being
    served at that moment, so many small bursts keep the service's tail flat where one big flush
    would spike it.

    A row that no Arrow type can hold goes to a dead-letter file under `dead_letter_root` with
    the reason, and so does a segment record that is not a row batch, the torn tail of a segment
    and the name of a segment that cannot be read (set aside beside the others); nothing that
    happens in the thread stops it. A failed write keeps its rows for the next attempt; beyond
    `max_buffered_rows` in memory the oldest rows are let go: those in a segment stay on disk and
    are re-read when the destination is back (or at the next start), without segments they are
    dropped and counted.
    """

    def __init__(
        self,
        root: str,
        time_columns: tuple[str, ...] = (TIMESTAMP,),
        flush_rows: int = 50_000,
        flush_seconds: float = 5.0,
        convert_seconds: float = 0.25,
        max_buffered_rows: int = 1_000_000,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "log",
        segments: wal.SegmentDir | None = None,
        dead_letter_root: str | None = None,
        on_dead_letter: Callable[[int], None] | None = None,
        retry_window: float = RETRY_WINDOW,
    ) -> None:
        self.root = root
        self.time_columns = time_columns
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.convert_seconds = min(convert_seconds, flush_seconds)
        self.max_buffered_rows = max_buffered_rows
        self.retry_window = retry_window
        self._on_error = on_error
        self._on_dead_letter = on_dead_letter
        self.name = name
        self.segments = segments
        self.dead_letter_root = dead_letter_root or join(root, "dead-letter")
        self._buffer = _Buffer()
        self._segment: wal.Segment | None = None
        self._segment_id = wal.new_segment_id()
        self._tables: list[pa.Table] = []  # converted rows of the open segment
        self._dead: list[dict[str, Any]] = []
        self._units: list[_Unit] = []  # sealed, not yet written (or failed to)
        self._waiting_since: float | None = None  # monotonic: units pending, none written since
        self._refused_bytes = 0  # the last record the segment could not take (what the disk must fit)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any | None = None
        self.written_rows = 0
        self.dropped_rows = 0
        self.dead_letter_rows = 0
        self.replayed_rows = 0
        self.unwritten_rows = 0
        self.failed_writes = 0  # consecutive
        self.last_error: str | None = None
        self.wal_error: str | None = None

    # -- request path -------------------------------------------------------------------------

    def append(self, columns: Mapping[str, list[Any]], rows: int, float_columns: Iterable[str] = ()) -> None:
        """Add `rows` rows given as equal-length column lists; `float_columns` stay float when all null.

        Time columns hold epoch seconds; they are written as UTC timestamps. With segments, the
        rows are in the open segment file when this returns (one `os.write`); when they cannot be
        put there, this raises LogUnavailable and keeps none of them: the caller must not
        acknowledge what a restart could lose (or a client's retry would log twice).
        """
        segments = self.segments
        record = None
        if segments is not None:
            try:
                record = wal.encode({"c": columns, "n": rows, "f": list(float_columns)})
            except (TypeError, ValueError) as err:
                raise self._wal_failed(err, 0) from err
        with self._lock:
            if segments is not None and record is not None:
                try:
                    if self._segment is None:
                        self._segment = segments.open(self._segment_id)
                    self._segment.append(record)
                except OSError as err:
                    raise self._wal_failed(err, len(record)) from err
                self.wal_error = None
            self._buffer.add(columns, rows, float_columns)
            full = self._buffer.rows >= self.flush_rows
        if full:
            self._wake.set()

    def _wal_failed(self, err: BaseException, size: int) -> LogUnavailable:
        if self.wal_error is None:
            log.error("%s: cannot append to the write-ahead segment: %s", self.name, _reason(err))
        self.wal_error = _reason(err)
        self._refused_bytes = size
        if self._on_error is not None:
            self._on_error(err)
        return LogUnavailable(f"the {self.name.replace('-', ' ')} cannot keep these rows: {self.wal_error}")

    def _probe(self) -> None:
        """After a refused append: clear the error once the disk can take that record again.

        Requests find out too, but a replica out of its Service gets none to find out with.
        """
        if self.wal_error is None or self.segments is None:
            return
        try:
            self.segments.probe(max(self._refused_bytes, 4096))
        except OSError:
            return
        self.wal_error = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the segment directory, queue what a previous process left in it, start the thread."""
        if self.segments is not None:
            try:
                self.segments.acquire()
                leftovers = self.segments.leftovers()
            except OSError as err:
                self._wal_failed(err, 0)
                self.segments = None
            else:
                if leftovers:
                    log.warning(
                        "%s: %d write-ahead segment(s) left by a previous process in %s; writing them to %s",
                        self.name, len(leftovers), self.segments.directory, self.root,
                    )
                self._units.extend(_Unit(i, 0, None, [], on_disk=True, tried=True) for i in leftovers)
                if leftovers:
                    self._waiting_since = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write everything still buffered; say truthfully what could not be."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.flush()
        except Exception:
            log.exception("%s: final write failed", self.name)
        self.unwritten_rows = self.pending_rows()
        if self.unwritten_rows:
            where = self.root
            if self.segments is not None and all(u.on_disk for u in self._units):
                log.error(
                    "%s: %d row(s) not written to %s at shutdown (%s); kept in %s and written at the next start",
                    self.name, self.unwritten_rows, where, self.last_error, self.segments.directory,
                )
            else:
                log.error(
                    "%s: %d row(s) not written to %s at shutdown (%s) and lost: no write-ahead segment holds them",
                    self.name, self.unwritten_rows, where, self.last_error,
                )
        if self.segments is not None:
            self.segments.release()

    def health(self) -> str:
        """OK, RETRYING (destination refusing, rows safe on local disk) or FAILING.

        FAILING: the thread died, the segments cannot take rows (requests are refused), or rows
        have waited for the destination longer than `retry_window` (whatever the cause: the
        store down for good, a write that fails the same way every time, a write that hangs).
        """
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return FAILING
        if self.wal_error is not None:
            return FAILING
        waiting = self.waiting_seconds()
        if waiting is not None and waiting > self.retry_window:
            return FAILING
        if self.failed_writes >= FAILING_AFTER:
            return RETRYING if self.segments is not None else FAILING
        return OK

    def waiting_seconds(self) -> float | None:
        """How long rows have waited for the destination with none written since (None: none waiting)."""
        waiting = self._waiting_since
        return None if waiting is None else time.monotonic() - waiting

    def pending_rows(self) -> int:
        """Rows accepted and not yet written (replayed segments count once they are read)."""
        with self._lock:
            buffered = self._buffer.rows
        return buffered + sum(t.num_rows for t in self._tables) + sum(u.rows for u in self._units)

    # -- the writer thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        sealed = time.monotonic()
        first = True
        while not self._stop.is_set():
            if not first:
                self._wake.wait(self.convert_seconds)
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                self._probe()
                self._convert()
                pending = sum(t.num_rows for t in self._tables)
                if first or pending >= self.flush_rows or time.monotonic() - sealed >= self.flush_seconds:
                    self._seal()
                    self._write_units()
                    sealed = time.monotonic()
            except Exception as err:  # never let one bad batch stop the log: say it, count it, go on
                log.exception("%s: writer step failed; continuing", self.name)
                self.last_error = _reason(err)
                if self._on_error is not None:
                    self._on_error(err)
            first = False

    def flush(self) -> int:
        """Convert, seal and write everything buffered now; returns the rows written (0 on failure, rows kept)."""
        self._convert()
        self._seal()
        return self._write_units()

    def _convert(self) -> None:
        with self._lock:
            buffer, self._buffer = self._buffer, _Buffer()
        self._take(buffer)

    def _take(self, buffer: _Buffer) -> None:
        if buffer.rows:
            tables, dead = convert_rows(buffer.columns, buffer.rows, buffer.floats, self.time_columns)
            self._tables += tables
            self._dead += dead

    def _seal(self) -> None:
        """Close the open segment; its rows become one unit to write."""
        with self._lock:
            buffer, self._buffer = self._buffer, _Buffer()
            segment, self._segment = self._segment, None
            segment_id, self._segment_id = self._segment_id, wal.new_segment_id()
        if segment is not None:
            segment.close()
        self._take(buffer)
        tables, dead, self._tables, self._dead = self._tables, self._dead, [], []
        rows = sum(t.num_rows for t in tables)
        if rows or dead:
            # A segment holds exactly the rows acknowledged into it (a refused append is cut off).
            self._units.append(_Unit(segment_id, rows, tables, dead, on_disk=segment is not None))
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
        elif segment is not None and self.segments is not None:
            self.segments.remove(segment_id)

    def _load(self, unit: _Unit) -> None:
        """Read a unit's rows back from its segment file; what is not rows becomes dead letters."""
        assert self.segments is not None
        path = self.segments.path(unit.id)
        try:
            data = path.read_bytes()
        except OSError as err:
            try:
                where = self.segments.set_aside(unit.id)
            except OSError:
                where = path
            log.error("%s: segment %s cannot be read (%s); set aside as %s", self.name, unit.id, _reason(err), where)
            unit.tables, unit.rows = [], 0
            unit.dead = [{"reason": f"unreadable segment: {_reason(err)}; set aside as {where}"}]
            return
        records, torn = wal.parse_segment(data)
        buffer = _Buffer()
        bad: list[dict[str, Any]] = []
        for record in records:
            if isinstance(record, wal.Garbled):
                bad.append({
                    "reason": f"not JSON: {record.reason}"[:300],
                    "payload_base64": base64.b64encode(record.payload).decode(),
                })
                continue
            try:
                columns, rows, floats = _row_batch(record, self.time_columns)
            except ValueError as err:
                bad.append({"reason": f"not a row batch: {err}", "record": record})
            else:
                buffer.add(columns, rows, floats)
        if torn:
            bad.append({
                "reason": f"torn segment: {torn} bytes after record {len(records)} form no record",
                "tail_base64": base64.b64encode(data[-torn:]).decode(),
            })
        if bad:
            log.error(
                "%s: segment %s: %d record(s) not written, sent to the dead letters (first: %s)",
                self.name, unit.id, len(bad), bad[0]["reason"],
            )
        unit.tables, dead = convert_rows(buffer.columns, buffer.rows, buffer.floats, self.time_columns)
        unit.dead = bad + dead
        unit.rows = sum(t.num_rows for t in unit.tables)

    def _write_units(self) -> int:
        written = 0
        while self._units:
            unit = self._units[0]
            try:
                if unit.tables is None:
                    self._load(unit)
                self._write_unit(unit)
            except Exception as err:  # storage down: keep the rows and retry on the next write
                unit.tried = True
                self.failed_writes += 1
                self.last_error = _reason(err)
                if self._stop.is_set():
                    log.error("%s: write to %s failed at shutdown: %s", self.name, self.root, self.last_error)
                else:
                    log.error("%s: write to %s failed, will retry: %s", self.name, self.root, self.last_error)
                if self._on_error is not None:
                    self._on_error(err)
                self._bound()
                return written
            self._units.pop(0)
            if unit.on_disk and self.segments is not None:
                self.segments.remove(unit.id)
            self._waiting_since = time.monotonic() if self._units else None
            self.failed_writes = 0
            self.written_rows += unit.rows
            written += unit.rows
            if unit.dead:
                self.dead_letter_rows += len(unit.dead)
                if self._on_dead_letter is not None:
                    self._on_dead_letter(len(unit.dead))
        return written

    def _write_unit(self, unit: _Unit) -> None:
        if self._client is None and _is_s3(self.root):
            self._client = s3_client()
        if unit.dead:
            # Before the Parquet files: a retry rewrites both under the same names.
            day = datetime.fromtimestamp(wal.segment_time(unit.id), UTC).date()
            uri = join(self.dead_letter_root, partition(day), f"{DEAD_PREFIX}{unit.id}{DEAD_SUFFIX}")
            lines = [_dead_letter_line(self.name, unit.id, dead) for dead in unit.dead]
            put_file(uri, "".join(lines).encode(), client=self._client)
            log.error(
                "%s: %d row(s) could not be stored as Parquet, written to %s (first: %s)",
                self.name, len(unit.dead), uri, unit.dead[0]["reason"],
            )
        if unit.tables:
            write_table(unify(unit.tables), self.root, client=self._client, name=unit.id, keep_existing=unit.tried)

    def _bound(self) -> None:
        """Let go of the oldest rows in memory beyond `max_buffered_rows`."""
        excess = sum(u.rows for u in self._units if u.tables is not None) - self.max_buffered_rows
        for unit in list(self._units):
            if excess <= 0:
                return
            if unit.tables is None:
                continue
            if unit.on_disk:
                excess -= unit.rows
                unit.tables, unit.dead = None, []  # re-read from its segment when written
                continue
            cut = min(excess, unit.rows)
            self.dropped_rows += cut
            excess -= cut
            unit.rows -= cut
            unit.tables = _drop_first(unit.tables, cut)
            if unit.rows == 0 and not unit.dead:
                self._units.remove(unit)


def _drop_first(tables: list[pa.Table], rows: int) -> list[pa.Table]:
    out = []
    for table in tables:
        cut = min(rows, table.num_rows)
        rows -= cut
        if cut < table.num_rows:
            out.append(table.slice(cut))
    return out


def _dead_letter_line(store: str, segment_id: str, dead: dict[str, Any]) -> str:
    """One line: a row with its reason, or a segment record, torn tail or unreadable segment with its reason."""
    row = dead.get("row")
    stamp = row.get(TIMESTAMP) if isinstance(row, dict) else None
    at = stamp if isinstance(stamp, int | float) and not isinstance(stamp, bool) else wal.segment_time(segment_id)
    # The standard library's encoder: it takes any integer, and str() whatever else it cannot.
    doc = {"store": store, "segment": segment_id, TIMESTAMP: at, **dead}
    return json.dumps(doc, default=str) + "\n"
