"""The Prefect REST client retries what a busy server did not do, and nothing else."""

from __future__ import annotations

import httpx
import pytest

from mlops.local import prefect_rest
from mlops.local.prefect_rest import PrefectRest


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(prefect_rest, "RETRY_DELAYS", (0.0, 0.0, 0.0))


def _client(handler) -> PrefectRest:
    client = PrefectRest("http://prefect.test/api")
    client.http = httpx.Client(base_url=client.api_url, transport=httpx.MockTransport(handler))
    return client


def test_busy_answers_are_retried_until_the_call_goes_through():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json={"id": "d1"})

    assert _client(handler).deployment_id("monitor", "hourly") == "d1"
    assert calls == ["/api/deployments/name/monitor/hourly"] * 3


def test_a_server_that_stays_busy_fails_after_the_last_attempt():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    with pytest.raises(httpx.HTTPStatusError):
        _client(handler).flow_run("r1")
    assert len(calls) == 4  # three retries after the first call


def test_client_errors_are_not_retried():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404, json={"detail": "not found"})

    with pytest.raises(httpx.HTTPStatusError):
        _client(handler).deployment_id("nope", "none")
    assert len(calls) == 1


def test_a_timed_out_run_creation_is_not_sent_twice():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"id": "d1"})
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(httpx.ReadTimeout):
        _client(handler).start_run("monitor", "hourly")
    assert calls == ["GET", "POST"]
