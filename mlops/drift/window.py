"""The current window, one column at a time, as the drift statistics want it.

A check needs each numeric column whole (the exact Wasserstein and KS statistics rank every value),
but never all columns at once, and never a categorical column as Python objects: those are
reduced to counts chunk by chunk. Reading a Parquet file column by column, in row-group batches,
keeps peak memory near one or two columns instead of the whole window.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from mlops.drift.statistics import CategoricalColumn, NumericColumn, sort_finite
from mlops.errors import DataError

BATCH_ROWS = 131_072


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
    if not pd.api.types.is_numeric_dtype(values):
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
        dtype = self.frame[name].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            return None
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        return "numeric" if numeric else "categorical"

    def numeric(self, name: str) -> NumericColumn:
        return numeric_values(self.frame[name])

    def categorical(self, name: str) -> CategoricalColumn:
        return CategoricalColumn(count_categories(self.frame[name]))


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
        return "numeric" if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) else "categorical"

    def _batches(self, name: str):
        import pyarrow.parquet as pq

        # A fresh handle per column: threads may read different columns at the same time.
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows, columns=[name]):
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
            values = chunk.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            values = values[np.isfinite(values)]
            out[filled : filled + values.size] = values
            filled += values.size
        column = out[:filled]
        column.sort(kind="quicksort")
        return NumericColumn(column, integer=integer)

    def categorical(self, name: str) -> CategoricalColumn:
        import pyarrow as pa
        import pyarrow.compute as pc

        counts: Counter = Counter()
        for chunk in self._batches(name):
            if pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_decode()
            # Arrow counts in C; only the distinct values become Python objects.
            tally = pc.value_counts(chunk)
            for key, n in zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist(), strict=True):
                if key is None or (isinstance(key, float) and not np.isfinite(key)):
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
