"""An append-only store of Parquet files partitioned by UTC date, on a local dir or an s3:// prefix.

Layout: ``<root>/date=YYYY-MM-DD/part-<uuid>.parquet``. Files are only ever added, each one
atomically (a hidden temporary file renamed into place; one S3 put), so a reader never sees half
a file and writers never lock. `PartitionWriter` buffers rows in memory and writes them from a
background thread.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops.data import parse_uri, read_bytes, s3_client, s3_errors, write_bytes

log = logging.getLogger(__name__)

TIMESTAMP = "timestamp"
PARTITION_PREFIX = "date="
_DAY = 86_400


def _is_s3(root: str) -> bool:
    return root.startswith("s3://")


def join(root: str, *parts: str) -> str:
    """`root`/`parts` for a local directory or an s3:// prefix."""
    if _is_s3(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).joinpath(*parts))


def write_table(table: pa.Table, root: str, client: Any | None = None) -> list[str]:
    """Write `table` as one new Parquet file per UTC date of its TIMESTAMP column; return the URIs."""
    if table.num_rows == 0:
        return []
    seconds = table.column(TIMESTAMP).cast(pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000_000
    days = seconds // _DAY
    written = []
    for day in np.unique(days):
        part = table if len(days) and days[0] == days[-1] == day else table.filter(pa.array(days == day))
        stamp = datetime.fromtimestamp(int(day) * _DAY, UTC).strftime("%Y-%m-%d")
        uri = join(root, f"{PARTITION_PREFIX}{stamp}", f"part-{uuid.uuid4().hex}.parquet")
        buffer = io.BytesIO()
        pq.write_table(part, buffer)
        write_bytes(uri, buffer.getvalue(), client=client)
        written.append(uri)
    return written


def _partition_day(name: str) -> date | None:
    if not name.startswith(PARTITION_PREFIX):
        return None
    try:
        return date.fromisoformat(name[len(PARTITION_PREFIX):])
    except ValueError:
        return None


def list_files(root: str, first: date | None = None, last: date | None = None, client: Any | None = None) -> list[str]:
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
            for path in directory.glob("part-*.parquet")
        )
    # An unreachable or busy endpoint is StorageUnavailable (the monitor's read task retries it).
    with s3_errors(root, "list"):
        return sorted(_s3_keys(root, wanted, client or s3_client()))


def _s3_keys(root: str, wanted: Callable[[date | None], bool], client: Any) -> Iterator[str]:
    loc = parse_uri(join(root, "x.parquet"))
    prefix = loc.key[: -len("x.parquet")]
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix + PARTITION_PREFIX):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix):].split("/")
            if (
                len(rest) == 2
                and rest[1].startswith("part-")
                and rest[1].endswith(".parquet")
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


class PartitionWriter:
    """Buffers rows column by column and writes them as Parquet partitions from its own thread.

    `append` is cheap and thread-safe: the request path hands over ready-made column lists. The
    writer thread turns them into Arrow tables every `convert_seconds` (in C, a fraction of a
    microsecond a value) and writes one file per date every `flush_seconds` or `flush_rows`
    rows, and on `close`. Converting in small slices matters: whatever this thread holds the
    GIL for is added to the latency of requests being served at that moment, so many small
    bursts keep the service's tail flat where one big flush would spike it. A failed write keeps
    its rows for the next attempt, up to `max_buffered_rows`, beyond which the oldest are
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
    ) -> None:
        self.root = root
        self.time_columns = time_columns
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.convert_seconds = min(convert_seconds, flush_seconds)
        self.max_buffered_rows = max_buffered_rows
        self._on_error = on_error
        self.name = name
        self._columns: dict[str, list[Any]] = {}
        self._floats: set[str] = set()
        self._rows = 0
        self._tables: list[pa.Table] = []  # converted, not yet written (or failed to)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any | None = None
        self.written_rows = 0
        self.dropped_rows = 0

    def append(self, columns: Mapping[str, list[Any]], rows: int, float_columns: Iterable[str] = ()) -> None:
        """Add `rows` rows given as equal-length column lists; `float_columns` stay float when all null.

        Time columns hold epoch seconds; they are written as UTC timestamps.
        """
        with self._lock:
            buffer = self._columns
            for name, values in columns.items():
                column = buffer.get(name)
                if column is None:
                    # A column new to this buffer (another version's feature): earlier rows get nulls.
                    column = buffer[name] = [None] * self._rows
                column.extend(values)
            self._rows += rows
            if len(buffer) != len(columns):
                for name, column in buffer.items():
                    if name not in columns:
                        column.extend([None] * rows)
            self._floats.update(float_columns)
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-writer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()

    def _loop(self) -> None:
        last_write = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.convert_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._convert()
            pending = sum(t.num_rows for t in self._tables)
            if pending >= self.flush_rows or time.monotonic() - last_write >= self.flush_seconds:
                self._write()
                last_write = time.monotonic()

    def flush(self) -> int:
        """Convert and write everything buffered now; returns the rows written (0 on failure, rows kept)."""
        self._convert()
        return self._write()

    def _convert(self) -> None:
        with self._lock:
            columns, floats, rows = self._columns, self._floats, self._rows
            self._columns, self._floats, self._rows = {}, set(), 0
        if rows:
            arrays = {name: _arrow_column(name, values, floats, self.time_columns) for name, values in columns.items()}
            self._tables.append(pa.table(arrays))

    def _write(self) -> int:
        if not self._tables:
            return 0
        tables, self._tables = self._tables, []
        try:
            # Column sets and null-only columns differ between slices; "permissive" unifies them.
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
            if self._client is None and _is_s3(self.root):
                self._client = s3_client()
            write_table(table, self.root, client=self._client)
        except Exception as err:  # storage down: keep the rows and retry on the next write
            log.error("%s: write to %s failed, will retry: %s", self.name, self.root, err)
            if self._on_error is not None:
                self._on_error(err)
            self._keep(tables)
            return 0
        self.written_rows += table.num_rows
        return table.num_rows

    def _keep(self, tables: list[pa.Table]) -> None:
        """Hold unwritten tables for the next write, dropping the oldest rows beyond the bound."""
        excess = sum(t.num_rows for t in tables) - self.max_buffered_rows
        while excess > 0 and tables:
            oldest = tables[0]
            cut = min(excess, oldest.num_rows)
            self.dropped_rows += cut
            excess -= cut
            tables = tables[1:] if cut == oldest.num_rows else [oldest.slice(cut), *tables[1:]]
        self._tables = tables + self._tables
