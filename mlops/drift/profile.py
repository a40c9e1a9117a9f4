"""The reference side of every drift check, computed once at training time and stored with the model.

A profile keeps, per monitored column, exactly what the statistics need from the reference:
numeric columns as their sorted finite values (exact, so Wasserstein and KS match Evidently to the
last digit), categorical columns as counts per category. It is one uncompressed .npz file: the
numeric arrays load lazily, one column at a time, and a JSON header holds the kinds and counts.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.drift.statistics import CategoricalColumn, Column, NumericColumn
from mlops.drift.window import (
    CATEGORICAL,
    NUMERIC,
    FrameWindow,
    WindowColumns,
    map_columns,
    read_column,
)
from mlops.errors import DataError

if TYPE_CHECKING:  # `mlops drift-check` on Parquet never imports pandas: it starts faster
    import pandas as pd

FORMAT_VERSION = 1


class ReferenceProfile:
    """Per-column reference summaries; numeric arrays may be loaded on first use."""

    def __init__(
        self, rows: int, kinds: dict[str, str], columns: dict[str, Column],
        archive: Any = None, arrays: dict[str, str] | None = None, integer: set[str] | None = None,
        source: str = "reference profile",
    ) -> None:
        self.rows = rows
        self.kinds = dict(kinds)
        self._columns = dict(columns)
        # Stored numeric columns: their key in the archive, and which were integer-typed.
        self._archive = archive
        self._arrays = dict(arrays or {})
        self._integer = set(integer or ())
        # Checks read columns from several threads; one zip member at a time keeps reads simple.
        self._lock = threading.Lock()
        self.source = source  # how errors name it: the file it was loaded from

    @property
    def names(self) -> list[str]:
        return list(self.kinds)

    def column(self, name: str) -> Column:
        """The column's summary; a numeric array stored in a file is read now and not cached."""
        if name in self._columns:
            return self._columns[name]
        if name in self._arrays:
            try:
                with self._lock:
                    values = self._archive[self._arrays[name]]
            except _UNREADABLE as err:  # a damaged member shows only when it is read
                raise DataError(f"{self.source}: damaged drift reference profile, column '{name}': {_first_line(err)}") from None
            return NumericColumn(values, integer=name in self._integer)
        raise KeyError(f"the reference profile has no column '{name}'")

    def to_bytes(self) -> bytes:
        """The profile as one .npz payload (no pickled objects: it loads with allow_pickle=False)."""
        header: dict[str, Any] = {"format": FORMAT_VERSION, "rows": self.rows, "columns": []}
        arrays: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.names):
            column = self.column(name)
            entry: dict[str, Any] = {"name": name, "kind": self.kinds[name]}
            if isinstance(column, NumericColumn):
                entry.update(array=f"c{i}", integer=column.integer)
                arrays[f"c{i}"] = column.values
            else:
                entry["counts"] = [[_plain(k), int(v)] for k, v in column.counts.items()]
            header["columns"].append(entry)
        buffer = io.BytesIO()
        np.savez(buffer, header=np.array(json.dumps(header)), **arrays)
        return buffer.getvalue()

    @classmethod
    def load(cls, source: str | Path | bytes, name: str | None = None) -> ReferenceProfile:
        """Open a stored profile (a path, or the payload named `name`); numeric columns load when asked.

        A file that is not a profile (truncated, another format, a damaged header) is a DataError
        naming it, never a zipfile or numpy traceback.
        """
        path = name or ("profile payload" if isinstance(source, bytes) else str(source))
        raw = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        try:
            archive = np.load(raw, allow_pickle=False)
            header = json.loads(str(archive["header"]))
            if header.get("format") != FORMAT_VERSION:
                raise DataError(f"{path}: drift profile format {header.get('format')} (expected {FORMAT_VERSION})")
            kinds, columns, arrays, integer = {}, {}, {}, set()
            for entry in header["columns"]:
                column = entry["name"]
                kinds[column] = entry["kind"]
                if "array" in entry:
                    arrays[column] = entry["array"]
                    if entry.get("integer"):
                        integer.add(column)
                else:
                    columns[column] = CategoricalColumn({k: int(v) for k, v in entry["counts"]})
            rows = int(header["rows"])
        except (*_UNREADABLE, AttributeError, KeyError, TypeError) as err:
            raise DataError(f"{path}: not a drift reference profile ({_first_line(err)})") from None
        return cls(rows, kinds, columns, archive, arrays, integer, source=path)


# What numpy and zipfile raise for a file that is cut short or damaged.
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _plain(key: Any) -> Any:
    """A category as a JSON value that reads back equal (numpy scalars become Python ones)."""
    if isinstance(key, np.generic):
        key = key.item()
    if not isinstance(key, str | int | float | bool):
        raise ValueError(f"category {key!r} of type {type(key).__name__} cannot be stored in a drift profile")
    return key


def build_profile(window: WindowColumns, numeric: Iterable[str], categorical: Iterable[str]) -> ReferenceProfile:
    """Summarise the reference once: sorted finite values per numeric column, counts per category.

    Columns are read in parallel (`map_columns`): a cold `mlops drift-check` of two datasets
    builds this profile before it checks anything.
    """
    kinds = {name: NUMERIC for name in numeric} | {name: CATEGORICAL for name in categorical}
    missing = [c for c in kinds if c not in window.names]
    if missing:
        raise ValueError(f"reference data lacks monitored columns: {', '.join(missing)}")

    columns = map_columns(lambda name: read_column(window, name, kinds[name]), list(kinds))
    return ReferenceProfile(window.rows, kinds, dict(zip(kinds, columns, strict=True)))


def profile_frame(frame: pd.DataFrame, numeric: Iterable[str], categorical: Iterable[str]) -> ReferenceProfile:
    """build_profile of a frame in memory (the training sample, a small dataset)."""
    return build_profile(FrameWindow(frame), numeric, categorical)


def reference_sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of the training data (all of it when small enough) kept as the reference."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)
