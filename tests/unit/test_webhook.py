"""A notification's delivery promise (mlops/webhook.py) against real webhooks on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from mlops.webhook import IDEMPOTENCY_HEADER, DeliveryPolicy, deliver
from tests.loopback import Listener, reply

# Small numbers so the test takes about a second; the promise is the same with the defaults.
FAST = DeliveryPolicy(attempts=3, timeout_seconds=0.3, backoff_seconds=0.05)


class _Webhook:
    """A receiver that answers each POST with the next status of `answers` (None: never answers)."""

    def __init__(self, answers: list[int | None]) -> None:
        self.keys: list[str | None] = []
        self.ids: list[str] = []
        self.released = threading.Event()

        def answer(request) -> None:
            body = json.loads(request.rfile.read(int(request.headers.get("content-length", 0))))
            self.keys.append(request.headers.get(IDEMPOTENCY_HEADER))
            self.ids.append(body["id"])
            status = answers[min(len(self.keys), len(answers)) - 1]
            if status is None:  # accept, read, and hang until the test ends
                self.released.wait(10)
                return
            reply(request, status)

        self.listener = Listener(answer)
        self.url = self.listener.url()


@pytest.fixture
def webhook() -> Iterator[type[_Webhook]]:
    started: list[_Webhook] = []

    def start(answers: list[int | None]) -> _Webhook:
        started.append(_Webhook(answers))
        return started[-1]

    yield start
    for server in started:
        server.released.set()
        server.listener.close()


def test_a_webhook_that_never_answers_gets_exactly_the_promised_attempts_in_bounded_time(webhook):
    hook = webhook([None])
    began = time.monotonic()
    result = deliver(hook.url, "mlops: drift on churn", "model=churn version=3", FAST)
    elapsed = time.monotonic() - began
    assert not result.delivered and result.attempts == 3
    assert len(hook.keys) == 3 and set(hook.keys) == {result.key} and set(hook.ids) == {result.key}
    assert result.reason.count("ReadTimeout") == 3
    # Three timeouts and two backoffs (0.05 s, then 0.1 s), with room for a busy machine.
    assert elapsed < FAST.worst_case_seconds() + 1.0


def test_a_500_then_a_200_is_delivered_on_the_second_attempt_with_the_same_key(webhook):
    hook = webhook([500, 200])
    result = deliver(hook.url, "mlops: churn promoted", "model=churn version=4 event=promoted", FAST)
    assert result.delivered and result.attempts == 2 and result.reason == "attempt 1: 500; attempt 2: 200"
    assert hook.keys == [result.key, result.key]


def test_a_client_error_is_not_sent_again_and_other_text_has_another_key(webhook):
    hook = webhook([404])
    result = deliver(hook.url, "mlops: churn promoted", "model=churn version=4", FAST)
    assert not result.delivered and result.attempts == 1 and hook.keys == [result.key]
    assert deliver(webhook([200]).url, "mlops: churn promoted", "model=churn version=5", FAST).key != result.key


def test_nothing_listening_is_tried_the_promised_times():
    slept: list[float] = []
    result = deliver("http://127.0.0.1:9/hook", "s", "b", FAST, sleep=slept.append)
    assert not result.delivered and result.attempts == 3 and slept == [0.05, 0.1]
