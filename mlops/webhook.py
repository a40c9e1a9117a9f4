"""Delivering one notification to a webhook: the promise, in one place.

At least once, at most `attempts` times: each attempt waits at most `timeout_seconds` for an
answer (connect, send and read together), the next one starts after `backoff_seconds`, doubled
each time. A 2xx answer is delivered and ends it; a timeout, a refused connection, 408, 429 or a
5xx is tried again; any other answer (a 4xx: the request is wrong, sending it again cannot help)
ends it undelivered. Every attempt carries the same `Idempotency-Key` header (and the JSON's
`id`), so a receiver that answered too late for us, and so sees the message again, can drop the copy.

A webhook that accepts the connection and never answers gets `attempts` copies, no more: the
caller (Prefect's automation service, through tasks/notify_block.py) is told the outcome and
does not send it again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Answers worth another attempt: the receiver is busy or broken now, not refusing the message.
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard one notification is tried; the documented defaults (docs/notifications.md)."""

    attempts: int = 3
    timeout_seconds: float = 10.0
    backoff_seconds: float = 2.0

    def worst_case_seconds(self) -> float:
        """The longest a delivery can take: every attempt timing out, every backoff slept."""
        backoffs = sum(self.backoff_seconds * 2**i for i in range(self.attempts - 1))
        return self.attempts * self.timeout_seconds + backoffs


@dataclass
class Delivery:
    """What happened to one notification: delivered or not, after how many attempts, and why."""

    key: str
    delivered: bool = False
    attempts: int = 0
    outcomes: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.outcomes)


def idempotency_key(subject: str, body: str) -> str:
    """The same text is the same notification: its key is a digest of subject and body.

    The automations' bodies name what the event was about (model, version, action, reason), so
    two events differ in text; a redelivery of one event is the same text, so the same key.
    """
    return hashlib.sha256(f"{subject}\0{body}".encode()).hexdigest()[:32]


def deliver(
    url: str, subject: str, body: str, policy: DeliveryPolicy = DeliveryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST {"id", "subject", "body"} to `url` under `policy`; never raises for the receiver's faults."""
    key = idempotency_key(subject, body)
    result = Delivery(key)
    payload = {"id": key, "subject": subject, "body": body}
    headers = {IDEMPOTENCY_HEADER: key, "user-agent": "mlops-notify"}
    with httpx.Client(timeout=httpx.Timeout(policy.timeout_seconds)) as client:
        for attempt in range(policy.attempts):
            if attempt:
                sleep(policy.backoff_seconds * 2 ** (attempt - 1))
            result.attempts += 1
            try:
                # httpx's timeout bounds each phase; the deadline bounds the attempt as a whole.
                response = _post_within(client, url, payload, headers, policy.timeout_seconds)
            except httpx.HTTPError as err:
                result.outcomes.append(f"attempt {attempt + 1}: {type(err).__name__}")
                continue
            if response.is_success:
                result.delivered = True
                result.outcomes.append(f"attempt {attempt + 1}: {response.status_code}")
                return result
            result.outcomes.append(f"attempt {attempt + 1}: {response.status_code}")
            if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                return result
    return result


def _post_within(client: httpx.Client, url: str, payload: dict, headers: dict, seconds: float) -> httpx.Response:
    """One POST that gives up after `seconds` in total, even when the receiver trickles bytes."""
    deadline = time.monotonic() + seconds
    with client.stream("POST", url, json=payload, headers=headers) as response:
        for _ in response.iter_bytes():
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"no complete answer within {seconds:g} s")
    return response
