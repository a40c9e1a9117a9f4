"""A client holds the serving process only as long as it takes to send a request, and only so many do.

A real uvicorn server, configured as the serving process is (`server_config`), on a free loopback
port in this process, in front of a small ASGI app; the clients are raw sockets, since a slow or
unfinished request is exactly what an HTTP client library will not send.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlops.config import Settings
from mlops.serving import connections
from mlops.serving.server import server_config
from tests.loopback import serving_in_thread

# What a test waits at most for an answer or a close; the deadline under test is far shorter.
PATIENCE = 10.0


async def echo(scope, receive, send) -> None:
    """Reads the whole body, waits `?wait=S` seconds (a slow model), answers the body's length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    query = scope["query_string"].decode()
    if query.startswith("wait="):
        await asyncio.sleep(float(query[5:]))
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(request_timeout: float, max_connections: int, base=None) -> Iterator[int]:
    """The server on a free loopback port; yields the port."""
    settings = Settings(MLOPS_SERVING_REQUEST_TIMEOUT=str(request_timeout), MLOPS_SERVING_MAX_CONNECTIONS=str(max_connections))
    config = server_config(echo, "127.0.0.1", 0, settings)
    if base is not None:
        config.http = connections.bounded_protocol(request_timeout, max_connections, base)
    config.log_level = "warning"
    with serving_in_thread(config) as port:
        yield port


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    return client


def until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout (a failure) if it never does."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


POST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("base", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
def test_a_request_not_received_in_time_is_408_and_closed_and_a_slow_answer_is_not(base):
    with serving(request_timeout=0.3, max_connections=50, base=base) as port:
        sent = {
            "body-never-comes": POST + b"Content-Length: 100\r\n\r\n",
            "body-half-sent": POST + b"Content-Length: 100\r\n\r\n" + b"x" * 50,
            "headers-never-end": POST + b"Content-Length: 100\r\n",
            "nothing-sent": b"",
        }
        clients = {case: connect(port) for case in sent}
        for case, data in sent.items():
            clients[case].sendall(data)
        for case, client in clients.items():
            with client:
                answer = until_closed(client)
            assert answer.startswith(b"HTTP/1.1 408 "), (case, answer)
            assert b"MLOPS_SERVING_REQUEST_TIMEOUT" in answer

        # A request received whole is answered however long the model takes past the deadline,
        # and the next one on that connection gets its own deadline.
        with connect(port) as client:
            client.sendall(b"POST /?wait=0.6 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
            client.sendall(POST + b"Content-Length: 10\r\n\r\n12345")  # pipelined, never finished
            answer = until_closed(client)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 2, answer
        assert b"\r\n\r\n3HTTP/1.1 408 " in answer


def test_beyond_max_connections_a_new_one_is_503_and_closed_and_a_freed_slot_is_usable():
    with serving(request_timeout=PATIENCE * 3, max_connections=2) as port:
        held = [connect(port), connect(port)]
        with connect(port) as extra:
            answer = until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"MLOPS_SERVING_MAX_CONNECTIONS" in answer
        held.pop().close()
        # The server counts the closed one out when it reads its end: until then a try is refused.
        for _ in range(100):
            with connect(port) as client:
                client.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                answer = until_closed(client)
            if not answer.startswith(b"HTTP/1.1 503 "):
                break
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n2"), answer
        held.pop().close()
