"""Soak: the serving process under sustained concurrent load while the champion is swapped twice.

Bounded in time (SOAK_SECONDS). Clients are keep-alive httpx connections in threads; the server is
the real `python -m mlops.serving` process of tests/integration/test_serving.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from mlflow import MlflowClient

from mlops.registry import ALIAS_CHAMPION
from mlops.serving.prediction_log import read_prediction_log
from tests.integration.test_serving import MODEL, rows, serve

SOAK_SECONDS = 36
CLIENTS = 8
# Resident memory may grow this much from the first sample after warm-up to the last. Each swap
# loads a model (a few MB here) while the old one is dropped, and the prediction log buffers rows
# between flushes; a leak of even 1 KB per request (tens of thousands of requests) would pass it.
RSS_GROWTH_LIMIT_MB = 60


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def test_sustained_load_with_two_swaps_loses_nothing(store, tmp_path):
    sample = rows(40)
    answers: list[list[tuple[int, str | None, str | None]]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []
    stop = threading.Event()
    with serve(store, tmp_path) as server:
        def client_loop(index: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    batch = [sample[(i + k) % len(sample)] for k in range(1 + i % 3)]
                    try:
                        response = client.post("/predict", json={"records": batch})
                        body = response.json()
                        answers[index].append((response.status_code, body.get("model_version"), body.get("request_id")))
                    except Exception as err:  # a dropped connection is a failed request too
                        failures.append(f"{type(err).__name__}: {err}")
                    i += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        registry = MlflowClient(tracking_uri=store, registry_uri=store)
        rss: list[float] = []
        started = time.monotonic()
        swaps = {SOAK_SECONDS / 3: "2", 2 * SOAK_SECONDS / 3: "1"}
        try:
            while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
                for at, version in list(swaps.items()):
                    if elapsed >= at:
                        registry.set_registered_model_alias(MODEL, ALIAS_CHAMPION, version)
                        del swaps[at]
                if elapsed > 3:  # after warm-up: the first batches allocate the batcher's buffers
                    rss.append(_rss_mb(server.proc.pid))
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        assert server.stop() == 0, server.tail()

    results = [a for per_client in answers for a in per_client]
    assert failures == []
    assert {status for status, _, _ in results} == {200}, "some requests failed"
    # Both swaps happened under load: v1, then v2, then v1 again.
    assert {version for _, version, _ in results} == {"1", "2"}
    for per_client in answers:
        versions = [v for _, v, _ in per_client]
        changes = [b for a, b in zip(versions, versions[1:], strict=False) if a != b]
        assert changes in ([], ["2"], ["2", "1"], ["1"]), changes  # forward only, never flapping
    growth = max(rss[-5:]) - rss[0]
    assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.1f} MB ({rss[0]:.0f} -> {max(rss[-5:]):.0f} MB)"
    # Every answered request is in the prediction log exactly once, with all its rows.
    log = read_prediction_log(server.log_uri)
    ids = [request_id for _, _, request_id in results]
    assert len(ids) == len(set(ids)) > 1000
    per_request = log.groupby("request_id")["row"].agg(["count", "nunique"])
    assert set(per_request.index) == set(ids)
    assert (per_request["count"] == per_request["nunique"]).all(), "a row was logged twice"
    expected_rows = sum(1 + i % 3 for per_client in answers for i in range(len(per_client)))
    assert len(log) == expected_rows
    print(f"soak: {len(ids)} requests, {len(log)} rows, RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB")
