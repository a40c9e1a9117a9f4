"""The notification block `mlops-notify` sends through: a webhook with mlops's delivery promise.

Not a task: Prefect's automation service (inside the Prefect server) calls the block's `notify`
for each `send-notification` action. Prefect's own Custom Webhook block raised on a timeout or a
5xx, and the server's message queue then ran the action again, up to four times with no pause and
no way for the receiver to tell a copy from a new message. This block does what
mlops/webhook.py promises and then reports the outcome as Prefect's NotificationError, which the
server records as a failed action and never retries.

The server finds this class by the `prefect.collections` entry point in pyproject.toml.
"""

from __future__ import annotations

import asyncio

from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.blocks.abstract import NotificationBlock, NotificationError
from pydantic import Field, SecretStr

from mlops.webhook import DeliveryPolicy, deliver

BLOCK_TYPE = "mlops-webhook"
DEFAULTS = DeliveryPolicy()


class MlopsWebhook(NotificationBlock):
    """POST {"id", "subject", "body"} as JSON, at least once and at most `attempts` times."""

    _block_type_name = "mlops Webhook"
    _block_type_slug = BLOCK_TYPE

    url: SecretStr = Field(description="Where notifications are POSTed (kept as a secret)")
    attempts: int = Field(default=DEFAULTS.attempts, ge=1, le=10, description="Attempts per notification")
    timeout_seconds: float = Field(default=DEFAULTS.timeout_seconds, gt=0, le=60, description="Longest wait for one answer")
    backoff_seconds: float = Field(default=DEFAULTS.backoff_seconds, ge=0, le=60, description="Pause before the 2nd attempt, doubled after")

    def _send(self, body: str, subject: str | None) -> None:
        policy = DeliveryPolicy(self.attempts, self.timeout_seconds, self.backoff_seconds)
        result = deliver(self.url.get_secret_value(), subject or "", body, policy)
        if not result.delivered and self._raise_on_failure:
            raise NotificationError(log=f"not delivered after {result.attempts} attempts: {result.reason}")

    async def anotify(self, body: str, subject: str | None = None) -> None:
        await asyncio.to_thread(self._send, body, subject)

    @async_dispatch(anotify)
    def notify(self, body: str, subject: str | None = None) -> None:
        self._send(body, subject)
