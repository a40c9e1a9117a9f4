"""Reading, writing and fingerprinting datasets, locally (S3 is covered by integration tests)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from botocore import exceptions as boto_errors

from mlops.data import fingerprint_frame, parse_uri, read_frame, write_frame
from mlops.errors import DataError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, float("nan"), 2.0]})


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_round_trip_keeps_fingerprint(tmp_path, frame, suffix):
    uri = str(tmp_path / f"d.{suffix}")
    write_frame(frame, uri)
    back = read_frame(uri)
    assert fingerprint_frame(back) == fingerprint_frame(frame)


def test_fingerprint_sees_every_value_and_name(frame):
    base = fingerprint_frame(frame)
    changed = frame.copy()
    changed.loc[1, "a"] = 99
    renamed = frame.rename(columns={"a": "z"})
    assert fingerprint_frame(changed) != base
    assert fingerprint_frame(renamed) != base
    assert fingerprint_frame(frame.copy()) == base


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data/file.txt", "unsupported file type '.txt'"),
        ("data/file", "unsupported file type '(none)'"),
        ("ftp://host/file.csv", "unsupported URI scheme 'ftp'"),
        ("s3://bucket-only", "needs a bucket and a key"),
    ],
)
def test_parse_uri_rejects(uri, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_uri(uri)


def test_parse_s3_uri():
    loc = parse_uri("s3://bucket/path/to/x.parquet")
    assert (loc.bucket, loc.key, loc.format, loc.is_s3) == ("bucket", "path/to/x.parquet", "parquet", True)


def test_unreadable_files_give_one_line_errors(tmp_path):
    cases = {
        "missing.csv": None,
        "empty.csv": b"",
        "header.csv": b"a,b,c\n",
        "latin1.csv": "name,city\nJos\xe9,M\xfcnchen\n".encode("latin-1"),
        "dupe.csv": b"a,b,a\n1,2,3\n",
        "broken.parquet": b"PAR1 this is not really parquet",
    }
    expected = {
        "missing.csv": "file not found",
        "empty.csv": "file is empty",
        "header.csv": "no data rows",
        "latin1.csv": "not UTF-8",
        "dupe.csv": "duplicate column name 'a'",
        "broken.parquet": "cannot parse as parquet",
    }
    for name, payload in cases.items():
        path = tmp_path / name
        if payload is not None:
            path.write_bytes(payload)
        with pytest.raises(DataError) as err:
            read_frame(str(path))
        assert expected[name] in str(err.value), name
        assert str(path) in str(err.value)
        assert "\n" not in str(err.value)


def test_truncated_parquet_is_refused(tmp_path, frame):
    path = tmp_path / "t.parquet"
    write_frame(frame, str(path))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot parse as parquet"):
        read_frame(str(path))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path, frame):
    target = tmp_path / "sub" / "out.parquet"
    write_frame(frame, str(target))
    assert [p.name for p in target.parent.iterdir()] == ["out.parquet"]


def test_failed_write_leaves_nothing(tmp_path):
    bad = pd.DataFrame({"a": [object()]})  # parquet cannot encode a bare object
    target = tmp_path / "out.parquet"
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        write_frame(bad, str(target))
    assert list(tmp_path.iterdir()) == []


# -- S3 failures: "not now" is retried, "no" is not ------------------------------------------------------

class _FailingS3:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_object(self, **_kwargs):
        raise self.error

    def put_object(self, **_kwargs):
        raise self.error

    def get_paginator(self, _name):
        failing = self

        class _Pages:
            def paginate(self, **_kwargs):
                raise failing.error

        return _Pages()


def _client_error(code: str):
    return boto_errors.ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize("error, transient", [
    (lambda: boto_errors.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (lambda: boto_errors.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
    (lambda: _client_error("SlowDown"), True),
    (lambda: _client_error("503"), True),
    (lambda: _client_error("NoSuchKey"), False),
    (lambda: _client_error("AccessDenied"), False),
    (lambda: boto_errors.NoCredentialsError(), False),
])
def test_s3_errors_are_one_line_and_only_outages_are_transient(error, transient):
    from mlops.errors import MlopsError, StorageUnavailable
    from mlops.serving import logstore
    from tasks import retry_if_transient

    # The datasets, and the prediction log the monitor reads (listing its partitions, then the files).
    for uri, call in (
        ("s3://b/k.parquet", lambda c: read_frame("s3://b/k.parquet", client=c)),
        ("s3://b/k.parquet", lambda c: write_frame(pd.DataFrame({"a": [1]}), "s3://b/k.parquet", client=c)),
        ("s3://b/log", lambda c: logstore.list_files("s3://b/log", client=c)),
        ("s3://b/log/date=2026-01-01/part-1.parquet",
         lambda c: logstore.read_files(["s3://b/log/date=2026-01-01/part-1.parquet"], client=c)),
    ):
        with pytest.raises(MlopsError) as caught:
            call(_FailingS3(error()))
        assert isinstance(caught.value, StorageUnavailable) is transient
        assert "\n" not in str(caught.value) and str(caught.value).startswith(f"{uri}: ")

        class _State:
            data = caught.value

        assert retry_if_transient(None, None, _State()) is transient


@pytest.mark.parametrize("header", ["a,,churned", "a, ,churned"])
def test_a_column_without_a_name_is_refused(tmp_path, header):
    path = tmp_path / "blank.csv"
    path.write_text(f"{header}\n1,2,0\n")
    with pytest.raises(DataError, match=r"blank.csv: column 2 has an empty name$"):
        read_frame(str(path))
    write_frame(pd.DataFrame({"a": [1], "": [2]}), str(tmp_path / "blank.parquet"))
    with pytest.raises(DataError, match="column 2 has an empty name"):
        read_frame(str(tmp_path / "blank.parquet"))


@pytest.mark.timeout(30)
def test_only_regular_files_are_read_and_only_up_to_the_size_limit(tmp_path, monkeypatch, frame):
    import os

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=rf"^{fifo}: is a FIFO \(named pipe\); only regular files are read$"):
        read_frame(str(fifo))
    device = tmp_path / "zero.csv"
    device.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=rf"^{device}: is a character device"):
        read_frame(str(device))
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(DataError, match="dir.csv: is a directory; only regular files are read"):
        read_frame(str(tmp_path / "dir.csv"))
    path = tmp_path / "big.csv"
    write_frame(frame, str(path))
    size = path.stat().st_size
    monkeypatch.setenv("MLOPS_MAX_DATASET_BYTES", str(size - 1))
    with pytest.raises(DataError, match=rf"big.csv: {size} bytes, more than the limit of {size - 1} \(MLOPS_MAX_DATASET_BYTES\)"):
        read_frame(str(path))
    link = tmp_path / "link.csv"
    link.symlink_to(path)  # a symlink to a regular file is read like the file
    monkeypatch.setenv("MLOPS_MAX_DATASET_BYTES", str(size))
    assert fingerprint_frame(read_frame(str(link))) == fingerprint_frame(read_frame(str(path)))
