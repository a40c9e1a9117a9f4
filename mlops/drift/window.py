"""The current window, one column at a time, as the drift statistics want it.

A check needs each numeric column whole (the exact Wasserstein and KS statistics rank every value),
but never all columns at once, and never a categorical column as Python objects: those are
reduced to counts chunk by chunk. Reading a Parquet file column by column, in row-group batches,
keeps peak memory near one or two columns instead of the whole window.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from mlops.drift.statistics import CategoricalColumn, NumericColumn, sort_finite
from mlops.errors import DataError

if TYPE_CHECKING:  # `mlops drift-check` on Parquet never imports pandas: it starts faster
    import pandas as pd

BATCH_ROWS = 131_072
# The two kinds of column a check compares; dates and times are neither (skipped).
NUMERIC = "numeric"
CATEGORICAL = "categorical"
T = TypeVar("T")


def map_columns(read: Callable[[str], T], names: Sequence[str], workers: int | None = None) -> tuple[T, ...]:
    """`read` of every column, in order, on a few threads (Parquet reads and sorts release the GIL).

    Each thread holds one column at a time, which bounds memory; the first error, in column
    order, is raised as a sequential loop would raise it.
    """
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(names) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return tuple(pool.map(read, names))
    return tuple(read(n) for n in names)


class WindowColumns(Protocol):
    """Where the engine reads the current window from."""

    @property
    def rows(self) -> int: ...

    @property
    def names(self) -> list[str]: ...

    def kind_of(self, name: str) -> str | None:
        """'numeric', 'categorical', or None for columns a drift check skips (dates, times)."""
        ...

    def numeric(self, name: str) -> NumericColumn: ...

    def categorical(self, name: str) -> CategoricalColumn: ...


def read_column(window: WindowColumns, name: str, kind: str) -> CategoricalColumn | NumericColumn:
    """One column as the statistics want it: sorted finite values, or counts per category."""
    return window.numeric(name) if kind == NUMERIC else window.categorical(name)


def count_categories(values: pd.Series) -> Counter:
    """Counts per category with NaN and infinities left out, as Evidently drops them."""
    counts = values.value_counts(dropna=True)
    out: Counter = Counter()
    for key, n in zip(counts.index.tolist(), counts.tolist(), strict=True):
        if isinstance(key, float) and not np.isfinite(key):
            continue
        out[key] += int(n)
    return out


def numeric_values(values: pd.Series) -> NumericColumn:
    from pandas.api.types import is_numeric_dtype

    if not is_numeric_dtype(values):
        raise ValueError(f"column '{values.name}' should contain numerical values only")
    return sort_finite(values.to_numpy())


class FrameWindow:
    """A window already in memory as a DataFrame (the prediction log, a small dataset)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def names(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def kind_of(self, name: str) -> str | None:
        from pandas.api import types

        dtype = self.frame[name].dtype
        if types.is_datetime64_any_dtype(dtype) or types.is_timedelta64_dtype(dtype):
            return None
        numeric = types.is_numeric_dtype(dtype) and not types.is_bool_dtype(dtype)
        return NUMERIC if numeric else CATEGORICAL

    def numeric(self, name: str) -> NumericColumn:
        return numeric_values(self.frame[name])

    def categorical(self, name: str) -> CategoricalColumn:
        return CategoricalColumn(count_categories(self.frame[name]))


# Arrow's primitive numeric types by name, as numpy dtypes.
_NUMPY_TYPES = {
    "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "halffloat": "f2", "float": "f4", "double": "f8",
}


def _non_null_values(chunk: Any) -> np.ndarray:
    """A numeric Arrow array's values without its nulls, as numpy, read from its buffers.

    No pyarrow.compute (its import is 0.1 s of a cold drift-check) and no Array.to_numpy (which
    imports pandas): DLPack hands numpy a null-free buffer as it is; otherwise the validity
    bitmap (one bit per value, least significant first) says which values to keep.
    """
    if not chunk.null_count:
        return np.from_dlpack(chunk)
    start, stop = chunk.offset, chunk.offset + len(chunk)
    values = np.frombuffer(chunk.buffers()[1], dtype=_NUMPY_TYPES[str(chunk.type)])[start:stop]
    valid = np.unpackbits(np.frombuffer(chunk.buffers()[0], dtype=np.uint8), bitorder="little")[start:stop]
    return values[valid.astype(bool)]


class ParquetWindow:
    """A local Parquet file read one column at a time, in batches of `batch_rows` rows."""

    def __init__(self, path: str | Path, batch_rows: int = BATCH_ROWS) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.batch_rows = batch_rows
        meta = pq.ParquetFile(self.path)
        self._rows = int(meta.metadata.num_rows)
        self._schema = meta.schema_arrow
        self._names = [str(n) for n in self._schema.names]

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def kind_of(self, name: str) -> str | None:
        import pyarrow as pa

        dtype = self._schema.field(name).type
        if pa.types.is_temporal(dtype):
            return None
        return NUMERIC if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) else CATEGORICAL

    def _batches(self, name: str, as_dictionary: bool = False):
        import pyarrow.parquet as pq

        # A fresh handle per column: threads may read different columns at the same time.
        handle = pq.ParquetFile(self.path, read_dictionary=[name] if as_dictionary else None)
        for batch in handle.iter_batches(batch_size=self.batch_rows, columns=[name]):
            yield batch.column(0)

    def numeric(self, name: str) -> NumericColumn:
        import pyarrow as pa

        out = np.empty(self._rows, dtype=np.float64)
        filled = 0
        integer = True
        for chunk in self._batches(name):
            if not (pa.types.is_integer(chunk.type) or pa.types.is_floating(chunk.type)):
                raise ValueError(f"column '{name}' should contain numerical values only")
            integer = integer and pa.types.is_integer(chunk.type) and chunk.null_count == 0
            values = _non_null_values(chunk).astype(np.float64, copy=False)
            values = values[np.isfinite(values)]
            out[filled : filled + values.size] = values
            filled += values.size
        column = out[:filled]
        column.sort(kind="quicksort")
        return NumericColumn(column, integer=integer)

    def categorical(self, name: str) -> CategoricalColumn:
        import pyarrow as pa

        dtype = self._schema.field(name).type
        # Parquet stores strings dictionary-encoded: reading them so, only the codes are counted
        # and only the distinct values become Python objects (several times faster than strings).
        text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
        strings = any(is_text(dtype) for is_text in text)
        counts: Counter = Counter()
        for chunk in self._batches(name, as_dictionary=strings):
            if pa.types.is_dictionary(chunk.type):
                tally = np.bincount(_non_null_values(chunk.indices), minlength=len(chunk.dictionary))
                pairs = zip(chunk.dictionary.to_pylist(), tally.tolist(), strict=True)
            else:
                import pyarrow.compute as pc  # only for categories that are not text (rare)

                found = pc.value_counts(chunk)  # Arrow counts in C
                pairs = zip(found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True)
            for key, n in pairs:
                if n == 0 or key is None or (isinstance(key, float) and not np.isfinite(key)):
                    continue
                counts[key] += n
        return CategoricalColumn(counts)


def open_window(uri: str) -> WindowColumns:
    """A local Parquet file streams; anything else (CSV, s3://) is read whole through mlops.data."""
    from mlops import data

    loc = data.parse_uri(uri)
    if not loc.is_s3 and loc.format == "parquet" and Path(loc.key).is_file():
        try:
            return ParquetWindow(loc.key)
        except Exception as err:  # pyarrow raises several types for a file it cannot parse
            raise DataError(f"{uri}: cannot parse as parquet: {str(err).splitlines()[0]}") from None
    return FrameWindow(data.read_frame(uri))
