"""Read and write frames from local paths or s3:// URIs; fingerprint what was read.

S3 goes through boto3 with the endpoint from Settings (MLOPS_S3_ENDPOINT_URL) or boto3's own
AWS_ENDPOINT_URL, so AWS, MinIO and moto all work. Writes are all-or-nothing: a local file is
written beside its target and renamed into place; an S3 object appears only when put completes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlops.errors import DataError, StorageUnavailable
from mlops.files import read_regular_file


def _settings() -> Any:
    # Imported on first use: drift-check reads local Parquet and never needs pydantic-settings.
    from mlops.settings import Settings

    return Settings()

if TYPE_CHECKING:
    # Imported where a frame is read or hashed: parse_uri and the file helpers serve
    # `mlops drift-check`, which reads Parquet with pyarrow and starts faster without pandas.
    import pandas as pd

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class DataLocation:
    """A parsed data URI: either a local path or an S3 bucket/key."""

    uri: str
    bucket: str | None
    key: str
    format: str

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None


def parse_uri(uri: str) -> DataLocation:
    """Split a URI into location and format (by extension), rejecting what we cannot read."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc or not parsed.path.strip("/"):
            raise DataError(f"{uri}: an S3 URI needs a bucket and a key (s3://bucket/key.parquet)")
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
    elif parsed.scheme in ("", "file"):
        bucket, key = None, parsed.path if parsed.scheme == "file" else uri
    else:
        raise DataError(f"{uri}: unsupported URI scheme '{parsed.scheme}' (use a local path or s3://)")
    suffix = Path(key).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{uri}: unsupported file type '{suffix or '(none)'}' (use .csv or .parquet)")
    return DataLocation(uri=uri, bucket=bucket, key=key, format=FORMATS[suffix])


def s3_client(endpoint_url: str | None = None) -> Any:
    """Build a boto3 S3 client; credentials come from boto3's usual environment chain."""
    import boto3

    endpoint = endpoint_url or os.environ.get("MLOPS_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def read_bytes(loc: DataLocation, client: Any | None = None, max_bytes: int | None = None) -> bytes:
    """A whole file, local or on S3, of at most `max_bytes` (default: MLOPS_MAX_DATASET_BYTES).

    Locally only a regular file is read (a FIFO would block forever, a symlink to a device would
    never end); a missing file, anything else or an S3 failure is one line naming the file.
    """
    limit = max_bytes if max_bytes is not None else _settings().max_dataset_bytes
    if not loc.is_s3:
        return read_regular_file(loc.key, limit, DataError, label=loc.uri, limit_name="MLOPS_MAX_DATASET_BYTES")
    client = client or s3_client()
    with s3_errors(loc.uri, "read"):
        response = client.get_object(Bucket=loc.bucket, Key=loc.key)
        size = int(response.get("ContentLength") or 0)
        if size > limit:
            response["Body"].close()
            raise DataError(f"{loc.uri}: {size} bytes, more than the limit of {limit} (MLOPS_MAX_DATASET_BYTES)")
        return response["Body"].read()


# Answers that say "not now" rather than "no": throttling and server-side failures.
_S3_BUSY_CODES = frozenset({"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable", "InternalError",
                            "500", "502", "503", "504"})


@contextmanager
def s3_errors(uri: str, action: str) -> Iterator[None]:
    """Turn boto errors into one-line errors: StorageUnavailable (retried) for an endpoint that is
    down or busy, DataError for everything that will fail the same way next time."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", "error"))
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise DataError(f"{uri}: object not found ({code})") from None
        if code in _S3_BUSY_CODES:
            raise StorageUnavailable(f"{uri}: S3 could not {action} now ({code})") from None
        raise DataError(f"{uri}: S3 refused the {action} ({code})") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as err:
        raise StorageUnavailable(f"{uri}: S3 endpoint unreachable ({type(err).__name__})") from None
    except BotoCoreError as err:  # missing credentials, bad parameters: trying again will not help
        raise DataError(f"{uri}: S3 {action} failed ({type(err).__name__})") from None


def read_frame(uri: str, client: Any | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet dataset; every failure is a one-line DataError naming the file."""
    import pandas as pd

    loc = parse_uri(uri)
    payload = read_bytes(loc, client)
    if not payload.strip():
        raise DataError(f"{uri}: file is empty")
    try:
        if loc.format == "csv":
            frame = pd.read_csv(io.BytesIO(payload), encoding="utf-8")
        else:
            frame = pd.read_parquet(io.BytesIO(payload))
    except UnicodeDecodeError:
        raise DataError(f"{uri}: not UTF-8 encoded text") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{uri}: file has no columns") from None
    except Exception as err:  # parsers raise many types; all mean "this file is unreadable"
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{uri}: cannot parse as {loc.format}: {detail}") from None
    header = _csv_header(payload) if loc.format == "csv" else [str(c) for c in frame.columns]
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(f"{uri}: column {position} has an empty name")
        if name in seen:
            raise DataError(f"{uri}: duplicate column name '{name}'")
        seen.add(name)
    if frame.empty:
        raise DataError(f"{uri}: no data rows (header only)")
    return frame


def _csv_header(payload: bytes) -> list[str]:
    """The header as written: pandas silently renames duplicates ('a', 'a.1'), hiding them."""
    first_line = payload.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    return next(csv.reader([first_line]), [])


def serialize_frame(frame: pd.DataFrame, fmt: str = "parquet") -> bytes:
    """The bytes of a frame as CSV or Parquet, without an index."""
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_bytes(uri: str, payload: bytes, client: Any | None = None) -> str:
    """Write a file all-or-nothing: beside its target then renamed locally; one put on S3."""
    loc = parse_uri(uri)
    if loc.is_s3:
        client = client or s3_client()
        with s3_errors(uri, "write"):
            client.put_object(Bucket=loc.bucket, Key=loc.key, Body=payload)
        return uri
    target = Path(loc.key)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A hidden ".<name>.*.tmp" file: readers listing "*.parquet" never see a half-written one.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return uri


def write_frame(frame: pd.DataFrame, uri: str, client: Any | None = None) -> str:
    """Write a frame as CSV or Parquet (by extension) atomically; return the URI."""
    return write_bytes(uri, serialize_frame(frame, parse_uri(uri).format), client)


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """Content hash of a frame: column names, dtypes and every value, independent of file format."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()
