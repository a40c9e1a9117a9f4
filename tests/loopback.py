"""Real servers on a free loopback port for the tests, each in a thread of the test process.

`Listener`: a plain HTTP server whose answer is one function of the request (a webhook that
hangs, another stack's worker answering /health). `serving_in_thread`: an ASGI app under uvicorn,
configured as the serving process is.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a test waits at most for a server thread to start or stop.
PATIENCE = 10.0


class Listener(ThreadingHTTPServer):
    """Answers every GET and POST with `answer(request)`; serves until `close()`."""

    daemon_threads = True

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                answer(self)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def reply(request: BaseHTTPRequestHandler, status: int) -> None:
    """An empty answer with `status`."""
    request.send_response(status)
    request.send_header("content-length", "0")
    request.end_headers()


@contextmanager
def serving_in_thread(config: Any) -> Iterator[int]:
    """uvicorn with `config` (a uvicorn.Config) on a free loopback port; yields the port."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            threading.Event().wait(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(PATIENCE)
        sock.close()
