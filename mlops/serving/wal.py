"""Write-ahead segments: the prediction log's rows on local disk before a response goes out.

A segment is an append-only file of length-prefixed records (a 4-byte little-endian length, then
a JSON document). The request path appends one record per answered request with one
`os.write`; the writer thread later turns a closed segment into Parquet partitions named after
it and only then deletes it. A process killed in between leaves its segments behind, and the next
start writes them under the same names, never replacing a file already there: every
acknowledged row lands exactly once. An append that fails (a full disk) is cut off the file
again, and the request that made it is refused: a segment holds exactly the rows acknowledged.

What it guarantees: without fsync, a record is in the kernel's page cache when `append`
returns, so it survives the death of the process (kill -9, OOM kill), not of the machine. With
fsync every append also waits for the disk, which survives a power cut at a much higher cost.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

SUFFIX = ".wal"
SET_ASIDE = ".unreadable"  # a segment that could not be read, kept for a person (never replayed)
_LENGTH = struct.Struct("<I")
# The length's top bit marks a record orjson could not encode (an integer beyond 64 bits) and the
# standard library did: orjson would read its big integers back as floats.
_STDLIB = 1 << 31
_LOCK = ".lock"
_PROBE = ".probe"


@dataclass(frozen=True)
class Garbled:
    """A whole record (its frame intact) whose bytes are not JSON: a damaged disk, a bug."""

    payload: bytes
    reason: str


class SegmentDirInUse(OSError):
    """Another live process holds the segment directory (two servers on one WAL dir)."""


def destination_dir(base: Path, uri: str) -> Path:
    """The segment directory for one log destination: rows are only ever replayed where they were headed."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return base / digest


def new_segment_id() -> str:
    """Sortable by creation time, unique across processes; also names the Parquet files it becomes."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def segment_time(segment_id: str) -> float:
    """Epoch seconds at which the segment was opened."""
    return int(segment_id.split("-", 1)[0]) / 1e9


def encode(record: dict[str, Any]) -> bytes:
    """One framed record; raises TypeError or ValueError for a value no JSON encoder takes."""
    try:
        payload = orjson.dumps(record)
        flag = 0
    except TypeError:
        payload = json.dumps(record, default=str).encode()
        flag = _STDLIB
    if len(payload) >= _STDLIB:
        raise ValueError(f"a record of {len(payload)} bytes is too large for a segment")
    return _LENGTH.pack(len(payload) | flag) + payload


def read_segment(path: Path) -> tuple[list[Any], int]:
    """`parse_segment` of a segment file; raises OSError when it cannot be read."""
    return parse_segment(path.read_bytes())


def parse_segment(data: bytes) -> tuple[list[Any], int]:
    """The records of a segment (a Garbled for each whole one that is not JSON) and the count of
    trailing bytes that form no whole record.

    A torn tail can only come from a machine crash without fsync or a damaged disk (a killed
    process does not half-finish a write to a regular file, and a failed append is cut off again).
    """
    records, offset = [], 0
    while offset + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, offset)
        flag, length = length & _STDLIB, length & ~_STDLIB
        end = offset + _LENGTH.size + length
        if end > len(data):
            break
        payload = data[offset + _LENGTH.size : end]
        try:
            records.append(json.loads(payload) if flag else orjson.loads(payload))
        except ValueError as err:  # orjson.JSONDecodeError and json.JSONDecodeError both are
            records.append(Garbled(payload, str(err)))
        offset = end
    return records, len(data) - offset


class SegmentDir:
    """One writer's segments in one directory, held with an exclusive lock for the process's life."""

    def __init__(self, directory: Path, fsync: bool = False) -> None:
        self.directory = directory
        self.fsync = fsync
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Create and lock the directory; raises SegmentDirInUse when another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SegmentDirInUse(f"{self.directory} is in use by another serving process") from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def leftovers(self) -> list[str]:
        """Ids of segments a previous process left behind, oldest first."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}"))

    def path(self, segment_id: str) -> Path:
        return self.directory / f"{segment_id}{SUFFIX}"

    def open(self, segment_id: str) -> Segment:
        return Segment(self.path(segment_id), self.fsync)

    def remove(self, segment_id: str) -> None:
        self.path(segment_id).unlink(missing_ok=True)

    def set_aside(self, segment_id: str) -> Path:
        """Rename a segment that cannot be read out of the replay's way; returns where it went."""
        target = self.path(segment_id).with_name(f"{segment_id}{SUFFIX}{SET_ASIDE}")
        os.replace(self.path(segment_id), target)
        return target

    def probe(self, size: int) -> None:
        """Raise OSError unless `size` bytes can be written here now (a disk that was full, freed?)."""
        path = self.directory / _PROBE
        try:
            segment = Segment(path, fsync=False)
            try:
                segment.append(bytes(size))
            finally:
                segment.close()
        finally:
            path.unlink(missing_ok=True)


class Segment:
    """One open segment file, appended to with single `os.write` calls."""

    def __init__(self, path: Path, fsync: bool) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size  # where the last whole record ends

    def append(self, data: bytes) -> None:
        """Append one record whole, or raise OSError and leave the file as it was."""
        if self._fd is None:
            raise OSError(f"segment {self.path} is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            # A full disk takes part of a record: cut it off, or the records appended after it
            # would be unreadable. A file that cannot even be cut takes no more records.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self.close()
            raise
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
