"""What one client may hold of the serving process: the time to send a request, and connections.

uvicorn bounds neither. A client that sends headers with a `Content-Length` and never the body
holds its connection (and the request's task, waiting in `receive()`) for as long as it likes, and
so does one that never finishes its headers or sends nothing after connecting: enough of them, and
the process runs out of file descriptors while every one of them costs nothing to the client.

`bounded_protocol` is uvicorn's own HTTP protocol (httptools, else h11) with a deadline per
request: from the connection's start, and after each response from that response's end, the
client has `request_timeout` seconds to deliver the whole next request (line, headers and body).
When it has not, a request not yet answered gets 408 and the connection is closed. A request
received whole is never cut short however long the model takes to answer it. Beyond
`max_connections` open connections a new one is answered 503 and closed at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)


def _reply(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def bounded_protocol(
    request_timeout: float, max_connections: int, base: type[asyncio.Protocol] = AutoHTTPProtocol,
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (`base`: httptools', else h11's) with a deadline to receive each
    request and a cap on open connections."""
    timed_out = _reply(408, "Request Timeout", f"request not received within {request_timeout:g} s "
                                               "(MLOPS_SERVING_REQUEST_TIMEOUT)")
    too_many = _reply(503, "Service Unavailable", f"more than {max_connections} open connections "
                                                  "(MLOPS_SERVING_MAX_CONNECTIONS)")

    class BoundedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("refusing a connection: more than %d open", max_connections)
                transport.write(too_many)
                transport.close()
                return
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._request_timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _request_timed_out(self) -> None:
            self._deadline = None
            cycle = self.cycle
            if self.transport.is_closing():
                return
            if cycle is not None and not cycle.more_body and not cycle.response_complete:
                return  # received whole and being answered: the next deadline starts at its end
            if getattr(self, "pipeline", None):
                # httptools queues a pipelined request (reading paused) while an earlier one is
                # answered, and `cycle` is then the queued one: the wait is the app's, not the client's.
                return
            if cycle is None or cycle.response_complete or not cycle.response_started:
                self.transport.write(timed_out)
            self.transport.close()  # the app waiting in receive() hears http.disconnect

    return BoundedHTTPProtocol
