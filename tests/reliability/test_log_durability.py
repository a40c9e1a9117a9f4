"""An acknowledged prediction is a logged prediction: kill -9 under load, and a destination that is
broken at shutdown. The server is the real `python -m mlops.serving` process of
tests/integration/test_serving.py; a restart on the same home writes what the first one left.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from mlops.serving import logstore
from mlops.serving.prediction_log import labels_root, read_prediction_log
from tests.integration.test_serving import rows, serve

CLIENTS = 6


def _raw_labels(log_uri: str) -> pd.DataFrame:
    """Every label row as stored (read_labels keeps the latest per key, which would hide duplicates)."""
    root = labels_root(log_uri)
    return logstore.read_files(logstore.list_files(root))


class _Traffic:
    """Clients that predict and label their own answers, recording only what was acknowledged."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sample = rows(30)
        self.predictions: dict[str, int] = {}
        self.labels: set[tuple[str, int]] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            k = index
            while not self.stop.is_set():
                n = 1 + k % 3
                try:
                    answer = client.post("/predict", json={"records": self.sample[k % 20 : k % 20 + n]})
                    if answer.status_code != 200:
                        continue
                    request_id = answer.json()["request_id"]
                    with self.lock:
                        self.predictions[request_id] = n
                    if k % 2 == 0:
                        items = [{"request_id": request_id, "row": r, "label": r % 2} for r in range(n)]
                        if client.post("/labels", json={"labels": items}).status_code == 200:
                            with self.lock:
                                self.labels.update((request_id, r) for r in range(n))
                except httpx.TransportError:
                    return  # the server is gone: whatever was not answered was never acknowledged
                k += CLIENTS

    def __enter__(self) -> _Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, requests: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.predictions) < requests:
            assert time.monotonic() < deadline, f"only {len(self.predictions)} requests answered"
            time.sleep(0.05)


def _assert_logged_exactly_once(traffic: _Traffic, log_uri: str) -> None:
    log = read_prediction_log(log_uri)
    per_request = log.groupby("request_id")["row"].agg(["count", "nunique"])
    assert (per_request["count"] == per_request["nunique"]).all(), "a prediction row was logged twice"
    missing = set(traffic.predictions) - set(per_request.index)
    assert not missing, f"{len(missing)} of {len(traffic.predictions)} acknowledged requests are not in the log"
    for request_id, n in traffic.predictions.items():
        assert per_request.loc[request_id, "count"] == n, request_id
    # At most one request per client was logged but its answer never arrived (in flight at the end).
    assert len(per_request) - len(traffic.predictions) <= CLIENTS
    labels = _raw_labels(log_uri)
    keys = list(zip(labels["request_id"], labels["row"], strict=True))
    assert len(keys) == len(set(keys)), "a label was logged twice"
    assert traffic.labels <= set(keys), f"{len(traffic.labels - set(keys))} acknowledged labels are not in the log"


def test_kill_9_under_load_loses_no_acknowledged_prediction_or_label(store, tmp_path):
    with serve(store, tmp_path) as server, _Traffic(server.url) as traffic:
        traffic.wait_for(400)
        os.killpg(server.proc.pid, signal.SIGKILL)  # mid-load: rows buffered, segments open
        server.proc.wait(timeout=30)
    assert len(traffic.predictions) >= 400 and traffic.labels

    # The same home and destination: the new process writes the segments the dead one left.
    with serve(store, tmp_path) as again:
        assert again.stop() == 0, again.tail()
        assert "left by a previous process" in again.output.read_text()
    _assert_logged_exactly_once(traffic, server.log_uri)
    assert not list((tmp_path / "home" / "serving-wal").rglob("*.wal")), "segments left after they were written"


def test_rows_the_destination_refuses_at_shutdown_stay_on_disk_and_arrive_after_a_restart(store, tmp_path):
    log_dir = tmp_path / "predictions"
    aside = tmp_path / "predictions-aside"
    with serve(store, tmp_path) as server:
        with _Traffic(server.url) as traffic:
            traffic.wait_for(100)
        # The destination breaks (a file where the directory was: even root cannot write into it).
        if log_dir.exists():
            log_dir.rename(aside)
        log_dir.write_text("not a directory")
        assert server.stop() == 0, server.tail()
        output = server.output.read_text(errors="replace")
    shutdown = output[output.index("Waiting for application shutdown"):]
    assert "will retry" not in shutdown, shutdown
    assert "not written to" in shutdown and "written at the next start" in shutdown, shutdown
    assert list((tmp_path / "home" / "serving-wal").rglob("*.wal")), "no segment kept on local disk"

    # Fixed: the directory is back, and the next start writes what was kept.
    log_dir.unlink()
    if aside.exists():
        aside.rename(log_dir)
    with serve(store, tmp_path) as again:
        assert again.stop() == 0, again.tail()
    _assert_logged_exactly_once(traffic, str(Path(server.log_uri)))
    assert not list((tmp_path / "home" / "serving-wal").rglob("*.wal"))
    shutil.rmtree(tmp_path / "home" / "serving-wal", ignore_errors=True)
